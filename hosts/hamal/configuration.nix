# Hand-kept NixOS configuration of hamal, a virtual machine. iac's generated module
# (generated/hamal: firewall, k3s agent) is added next to it by the flake.
{
  imports = [ ../qemu-vm.nix ];
}
