# Stand-in for nixpkgs' nixos/modules/virtualisation/proxmox-lxc.nix in tests/nix/definitions.nix:
# the definitions that file makes, restated (not copied), so the test can tell whether a
# hand-kept host file contradicts them. Read from the nixpkgs source (the version
# /work/shared/nixos-eval records: commit 01b159092f9f; the stored nixos-26.05-era copies
# define the same). Options the file declares appear as their defaults (mkOptionDefault);
# definitions that cannot collide with ours (system.build.tarball, security.wrappers.ping,
# systemd.mounts, getty) are left out. Update this file when nixpkgs changes the profile; the
# real module is checked by /work/shared/nixos-eval and `nix flake check`.
{ config, lib, ... }:
let
  cfg = config.proxmoxLXC;
in
{
  proxmoxLXC = {
    privileged = lib.mkOptionDefault false;
    manageNetwork = lib.mkOptionDefault false;
    manageHostName = lib.mkOptionDefault false;
  };

  boot.isContainer = true;
  boot.loader.initScript.enable = true;
  console.enable = true;

  # Proxmox configures the container's network (systemd-networkd) unless manageNetwork is set.
  networking = lib.mkIf (!cfg.manageNetwork) {
    useDHCP = false;
    useHostResolvConf = false;
    useNetworkd = true;
    hostName = lib.mkIf (!cfg.manageHostName) (lib.mkForce "");
  };

  services.openssh = {
    enable = lib.mkDefault true;
    startWhenNeeded = lib.mkDefault true;
  };
}
