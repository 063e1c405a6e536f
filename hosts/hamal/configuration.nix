# Hand-kept NixOS configuration of hamal: hardware, boot, disks. iac's generated module
# (generated/hamal: firewall, k3s agent) is added next to it by the flake.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    ../common.nix
  ];

  boot.loader.grub = {
    enable = true;
    device = "/dev/sda";
  };
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  networking.useDHCP = true;
}
