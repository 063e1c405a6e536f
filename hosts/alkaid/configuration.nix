# Hand-kept NixOS configuration of alkaid, a Proxmox LXC container. iac's generated module
# (generated/alkaid: firewall, PostgreSQL) is added next to it by the flake.
#
# The network is Proxmox's: nixpkgs' virtualisation/proxmox-lxc.nix, with its default
# `proxmoxLXC.manageNetwork = false`, defines `networking = { useDHCP = false;
# useHostResolvConf = false; useNetworkd = true; hostName = mkForce ""; }` and systemd-networkd
# applies the configuration Proxmox writes into the container from its `net0` settings; the
# host name comes from the /etc/hostname Proxmox writes. That is where a container's address
# belongs: Proxmox assigns it (and its bridge, VLAN and gateway), and the inventory has no
# gateway or interface to configure it with. Set `net0` to the inventory's address
# (`pct set <vmid> -net0 name=eth0,bridge=vmbr0,ip=172.22.0.133/24,gw=...`): the other hosts'
# firewalls and pg_hba admit alkaid's clients by the inventory, not by what Proxmox says.
#
# So this file must not set `networking.useDHCP`, `useNetworkd` or `hostName` itself: a plain
# definition that differs from the profile's ("conflicting definition values") stops the host
# from evaluating. tests/it/nix.rs checks this file against the profile (tests/nix/definitions.nix).
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/virtualisation/proxmox-lxc.nix")
    ../common.nix
  ];
}
