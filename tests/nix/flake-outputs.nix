# Evaluates flake.nix's `outputs` with a stand-in `nixpkgs`, for tests/it/nix.rs:
#
#   nix-instantiate --eval --strict --json tests/nix/flake-outputs.nix [--arg checkRuleset false]
#
# Real nixpkgs cannot be fetched where the tests run, so `nixpkgs` here is ours: `lib` has the
# functions flake.nix calls (or, when `nixpkgsLib` names a nixpkgs `lib/` directory, the real
# ones, with only `fileset.toSource` and `nixosSystem` stubbed), packages are records of their
# arguments, and `lib.nixosSystem` returns a configuration with an nftables.service whose
# ExecStart holds two stand-in derivations, as nixpkgs' services/networking/nftables.nix builds
# it. What this proves: the outputs evaluate; every inventory host gets its configuration (from
# the two module files), its checks and its deploy app; the ruleset check picks the
# `nftables-rules` derivation and refuses a configuration whose check is off; the package runs
# the tests it says it runs. What it cannot prove: anything about real nixpkgs (option names,
# the real module's wiring); /work/shared/nixos-eval and `nix flake check` do that.
{
  checkRuleset ? true,
  nixpkgsLib ? null,
}:
let
  flake = import ../../flake.nix;
  fakeDrv = name: attrs: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    drvPath = "/nix/store/00000000000000000000000000000000-${name}.drv";
    meta = { };
  } // attrs;
  pkg = name: fakeDrv name { meta.mainProgram = name; };

  stubLib = rec {
    genAttrs = names: f: builtins.listToAttrs (map (n: nameValuePair n (f n)) names);
    nameValuePair = name: value: { inherit name value; };
    inherit (builtins) listToAttrs filter concatMap head;
    toList = x: if builtins.isList x then x else [ x ];
    isDerivation = x: builtins.isAttrs x && (x.type or null) == "derivation";
    getExe = p: "${p.outPath}/bin/${p.meta.mainProgram}";
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p.outPath}/bin") ps);
  };
  lib =
    (if nixpkgsLib == null then stubLib else import nixpkgsLib)
    // {
      fileset = {
        unions = files: files;
        toSource = { root, fileset }: "/nix/store/00000000000000000000000000000000-source";
      };
      # nixpkgs' flake.nix defines lib.nixosSystem; this one records what it was given.
      nixosSystem =
        { system, modules }:
        {
          inherit system;
          modules = map toString modules;
          config = {
            networking.nftables = {
              enable = true;
              inherit checkRuleset;
            };
            systemd.services.nftables.serviceConfig.ExecStart = [
              (fakeDrv "nftables-ensure-deletions" { })
              (fakeDrv "nftables-rules" { })
            ];
            system.build.toplevel = fakeDrv "nixos-system" { };
          };
        };
    };

  pkgsFor = system: {
    stdenv.hostPlatform.system = system;
    rustPlatform.buildRustPackage = args: fakeDrv "${args.pname}-${args.version}" { inherit args; meta = args.meta; };
    # An app's `program` is "${writeShellScript ...}": the stand-in's outPath is the script text,
    # so the test can read what the app runs.
    writeShellScript = name: text: fakeDrv name { outPath = text; };
    writeText = name: text: fakeDrv name { inherit text; };
    runCommand = name: env: script: fakeDrv name { inherit script; };
    mkShell = args: fakeDrv "shell" { inherit args; };
    nix = pkg "nix";
    openssh = pkg "ssh";
    nftables = pkg "nft";
    util-linux = pkg "unshare";
    cargo-nextest = pkg "cargo-nextest";
    clippy = pkg "clippy";
    rustfmt = pkg "rustfmt";
    rust-analyzer = pkg "rust-analyzer";
    iproute2 = pkg "ip";
    postgresql = pkg "psql";
    nixos-rebuild-ng = pkg "nixos-rebuild-ng";
    kubectl = pkg "kubectl";
    nixfmt = pkg "nixfmt";
  };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  };
  self = outputs // {
    outPath = "/nix/store/11111111111111111111111111111111-source";
  };
  outputs = flake.outputs { inherit self nixpkgs; };

  drvName = d: if lib.isDerivation d then d.name else "<not a derivation>";
in
{
  inherit (flake) description;
  inputs = flake.inputs.nixpkgs.url;
  nixosConfigurations = builtins.mapAttrs (_: c: { inherit (c) system modules; }) outputs.nixosConfigurations;
  checks = builtins.mapAttrs (_: cs: builtins.mapAttrs (_: drvName) cs) outputs.checks;
  # The text of each writeText check (the nixos-<host> ones).
  checkTexts = builtins.mapAttrs (_: cs: builtins.mapAttrs (_: c: c.text or null) cs) outputs.checks;
  # Each app's type and script: the stub writeShellScript's outPath is its text.
  apps = builtins.mapAttrs (_: builtins.mapAttrs (_: a: { inherit (a) type program; })) outputs.apps;
  package = {
    inherit (outputs.packages.x86_64-linux.iac.args) cargoTestFlags checkFlags preCheck;
    nativeCheckInputs = map (p: p.meta.mainProgram) outputs.packages.x86_64-linux.iac.args.nativeCheckInputs;
    default = drvName outputs.packages.x86_64-linux.default;
  };
  formatter = drvName outputs.formatter.x86_64-linux;
  devShell = drvName outputs.devShells.x86_64-linux.default;
}
