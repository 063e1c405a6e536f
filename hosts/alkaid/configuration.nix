# Hand-kept NixOS configuration of alkaid, a Proxmox LXC container. iac's generated module
# (generated/alkaid: firewall, PostgreSQL) is added next to it by the flake.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/virtualisation/proxmox-lxc.nix")
    ../common.nix
  ];

  networking.useDHCP = true;
}
