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
          nativeCheckInputs = [
            pkgs.nftables
            pkgs.nix
          ];
          # The build sandbox has no network namespaces to create and no PostgreSQL server: run the
          # pure tests here (unit tests, snapshots, validation, Nix parsing). `.ci/run` runs them all.
          cargoTestFlags = [
            "--lib"
            "--test"
            "render"
            "--test"
            "validation"
          ];
          meta.mainProgram = "iac";
        };

      # What `iac deploy` runs besides itself: the build, the closure copy, SSH and the preflight
      # ruleset check in a private network namespace.
      deployTools =
        pkgs:
        lib.makeBinPath [
          pkgs.nixos-rebuild
          pkgs.nix
          pkgs.openssh
          pkgs.nftables
          pkgs.util-linux
        ];

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
          hostChecks = lib.listToAttrs (
            map (
              host:
              lib.nameValuePair "nixos-${host}" (
                # Forces evaluation of the host's whole NixOS configuration (our modules included)
                # without building the system.
                pkgs.writeText "nixos-${host}-drv" self.nixosConfigurations.${host}.config.system.build.toplevel.drvPath
              )
            ) (lib.filter (h: (inventory.hosts.${h}.system or "x86_64-linux") == system) hostNames)
          );
        in
        {
          package = self.packages.${system}.iac;
          render-up-to-date = pkgs.runCommand "iac-render-up-to-date" { } ''
            cd ${src}
            ${iac} render --check --inventory hosts/inventory.toml --out generated
            touch $out
          '';
          rulesets = pkgs.runCommand "iac-rulesets" { nativeBuildInputs = [ pkgs.nftables ]; } ''
            for f in ${src}/generated/*/nftables.nft; do
              echo "nft -c -f $f"
              nft -c -f "$f"
            done
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
            pkgs.nixos-rebuild
            pkgs.kubectl
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
