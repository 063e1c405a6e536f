# Stand-in for nixpkgs' nixos/modules/profiles/qemu-guest.nix in tests/nix/definitions.nix: it
# defines only lists of kernel modules (boot.initrd.availableKernelModules and kernelModules),
# which concatenate with any other definition and so can never conflict (abbreviated here to one
# entry each). Restated, not copied; read from the nixpkgs source (commit 07320dad4b16, as
# /work/shared/nixos-eval records).
{ ... }:
{
  boot.initrd.availableKernelModules = [ "virtio_net" ];
  boot.initrd.kernelModules = [ "virtio_balloon" ];
}
