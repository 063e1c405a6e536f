# Hand-kept settings every host of the estate shares. iac never writes this file.
{ lib, ... }:
{
  # SSH is the deploy path; iac's firewall keeps port 22 open to the admin networks.
  services.openssh = {
    enable = true;
    settings = {
      PermitRootLogin = "prohibit-password";
      PasswordAuthentication = false;
    };
  };
  # Add the admins' public keys here (or in the host's configuration.nix).
  users.users.root.openssh.authorizedKeys.keys = [ ];

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  time.timeZone = lib.mkDefault "UTC";
  system.stateVersion = "25.11";
}
