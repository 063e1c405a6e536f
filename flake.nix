{
  description = "iac: one host inventory -> every configuration a NixOS + k3s estate needs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      # The same inventory iac reads: every host in it gets a nixosConfiguration and a deploy app.
      inventory = builtins.fromTOML (builtins.readFile ./hosts/inventory.toml);
      hostNames = builtins.attrNames inventory.hosts;
      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions [
          ./Cargo.toml
          ./Cargo.lock
          ./askama.toml
          ./src
          ./templates
          ./tests
          ./hosts
          ./generated
        ];
      };

      iacFor =
        pkgs:
        pkgs.rustPlatform.buildRustPackage {
          pname = "iac";
          version = cargoToml.package.version;
          inherit src;
          cargoLock.lockFile = ./Cargo.lock;
          # The build sandbox has no network namespaces to create, no PostgreSQL server and no
          # kubectl: the build runs the tests that need none of them, i.e. the unit tests and three
          # modules of the integration test binary (tests/it): `render` (the snapshots),
          # `validation` (the errors) and `nix` (every .nix file parses with rnix and
          # `nix-instantiate --parse`, the generated modules evaluate with `nix-instantiate
          # --eval`, host files do not contradict their profiles). `.ci/run` runs everything.
          # IAC_REQUIRE_TOOLS makes a missing nix-instantiate fail those tests instead of skipping
          # them.
          nativeCheckInputs = [ pkgs.nix ];
          cargoTestFlags = [
            "--lib"
            "--test"
            "it"
          ];
          # cargoCheckHook hands checkFlags to every test binary it runs (`cargo test
          # ${cargoTestFlags} -- --test-threads=N ${checkFlags}`, nixpkgs'
          # pkgs/build-support/rust/hooks/cargo-check-hook.sh), and libtest runs a test whose name
          # contains a filter and no `--skip`. So `tests::` and `architecture::` keep every unit
          # test (they live in `mod tests`, `mod *_tests` or src/architecture.rs), the module
          # filters pick the three modules of tests/it, and the skip drops `fuzz_render`, which
          # `render::` also matches. tests/it/nix.rs checks that these select exactly that.
          checkFlags = [
            "tests::"
            "architecture::"
            "render::"
            "validation::"
            "nix::"
            "--skip"
            "fuzz_render::"
          ];
          # nix-instantiate needs a writable state directory and home, which the sandbox lacks:
          # point Nix's directories into the build directory, as nixpkgs' lib/tests/release.nix
          # does for the evaluations it runs in a build.
          preCheck = ''
            export IAC_REQUIRE_TOOLS=1
            export HOME=$(mktemp -d)
            export NIX_CONF_DIR=$TMPDIR/nix/etc
            export NIX_LOCALSTATE_DIR=$TMPDIR/nix/var
            export NIX_LOG_DIR=$TMPDIR/nix/var/log/nix
            export NIX_STATE_DIR=$TMPDIR/nix/var/nix
            export NIX_STORE_DIR=$TMPDIR/nix/store
          '';
          meta.mainProgram = "iac";
        };

      # What `iac deploy` runs besides itself: the build (`nix build`, `nix eval`), the closure
      # copy, SSH and the preflight ruleset check in a private network namespace. iac does not
      # run nixos-rebuild (it builds and activates the way nixos-rebuild-ng does, see
      # src/deploy/plan.rs).
      deployTools =
        pkgs:
        lib.makeBinPath [
          pkgs.nix
          pkgs.openssh
          pkgs.nftables
          pkgs.util-linux
        ];

      # The file nftables.service loads: nixpkgs' services/networking/nftables.nix builds it as
      # `rulesScript = pkgs.writeTextFile { name = "nftables-rules"; ... checkPhase = ...; }` and
      # puts it in `systemd.services.nftables.serviceConfig.ExecStart = [ ensureDeletions
      # rulesScript ]`. Its checkPhase (when `networking.nftables.checkRuleset`, the default) runs
      # `nft --check --file` on the exact text, in the build sandbox, under the Linux Kernel
      # Library (`LD_PRELOAD` of libredirect and lklWithFirewall's liblkl-hijack.so, with
      # `NIX_REDIRECTS` for /etc/hosts, /etc/protocols and /etc/services): the sandbox has no
      # CAP_NET_ADMIN, so a plain `nft -c` fails there ("cache initialization failed: Operation
      # not permitted"). Building this derivation is therefore nixpkgs' own ruleset check on the
      # text NixOS loads, with the nft NixOS ships, and nothing else of the system.
      nftablesRules =
        host: config:
        let
          start = lib.toList (config.systemd.services.nftables.serviceConfig.ExecStart or [ ]);
          rules = lib.filter (x: lib.isDerivation x && x.name == "nftables-rules") start;
        in
        if !config.networking.nftables.enable then
          throw "checks: ${host} does not enable networking.nftables (iac's generated module does)"
        else if !config.networking.nftables.checkRuleset then
          throw "checks: ${host} sets networking.nftables.checkRuleset = false: the ruleset check would not run"
        else if rules == [ ] then
          throw "checks: no `nftables-rules` derivation in ${host}'s nftables.service ExecStart (has nixpkgs' services/networking/nftables.nix changed?)"
        else
          lib.head rules;

      app = pkgs: name: script: {
        type = "app";
        program = "${pkgs.writeShellScript name script}";
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        iac = iacFor pkgs;
        default = iac;
      });

      apps = forAllSystems (
        pkgs:
        let
          iac = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.iac;
        in
        {
          # Renders into ./generated of the working tree the command is run from.
          render = app pkgs "iac-render" ''exec ${iac} render "$@"'';
          default = self.apps.${pkgs.stdenv.hostPlatform.system}.render;
        }
        // lib.listToAttrs (
          map (
            host:
            lib.nameValuePair "deploy-${host}" (
              app pkgs "iac-deploy-${host}" ''
                export PATH=${deployTools pkgs}:$PATH
                exec ${iac} deploy --flake ${self} ${host} "$@"
              ''
            )
          ) hostNames
        )
      );

      nixosConfigurations = lib.genAttrs hostNames (
        name:
        lib.nixosSystem {
          system = inventory.hosts.${name}.system or "x86_64-linux";
          modules = [
            ./hosts/${name}/configuration.nix
            ./generated/${name}
          ];
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          iac = lib.getExe self.packages.${system}.iac;
          hostsOfSystem = lib.filter (
            h: (inventory.hosts.${h}.system or "x86_64-linux") == system
          ) hostNames;
          hostChecks = lib.listToAttrs (
            lib.concatMap (
              host:
              let
                config = self.nixosConfigurations.${host}.config;
              in
              [
                # Evaluates the host's whole configuration (our modules, the hand-kept files and
                # every NixOS module they enable): instantiating the toplevel writes every .drv
                # of the system. `drvPath` carries a deep string context (every output of every
                # derivation in the closure), so writing it as is would make building this check
                # build the whole system with its compilers; unsafeDiscardOutputDependency keeps
                # only the .drv file itself, so building the check realises nothing but this text.
                (lib.nameValuePair "nixos-${host}" (
                  pkgs.writeText "nixos-${host}-drv" (
                    builtins.unsafeDiscardOutputDependency config.system.build.toplevel.drvPath
                  )
                ))
                # nixpkgs' own `nft --check` of the rules file this host's nftables.service loads.
                (lib.nameValuePair "ruleset-${host}" (nftablesRules host config))
              ]
            ) hostsOfSystem
          );
        in
        {
          package = self.packages.${system}.iac;
          render-up-to-date = pkgs.runCommand "iac-render-up-to-date" { } ''
            cd ${src}
            ${iac} render --check --inventory hosts/inventory.toml --out generated
            touch $out
          '';
        }
        // hostChecks
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.iac ];
          packages = [
            pkgs.cargo-nextest
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.nftables
            pkgs.iproute2
            pkgs.postgresql
            # Not needed by iac; installs the command `nixos-rebuild-ng` (its package.nix:
            # `withNgSuffix ? true`).
            pkgs.nixos-rebuild-ng
            pkgs.kubectl
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
