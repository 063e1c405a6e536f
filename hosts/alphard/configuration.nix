# Hand-kept NixOS configuration of alphard, a virtual machine. iac's generated module
# (generated/alphard: firewall, k3s server) is added next to it by the flake.
{
  imports = [ ../qemu-vm.nix ];
}
