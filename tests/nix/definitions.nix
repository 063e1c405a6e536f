# Which option definitions of one host would NixOS refuse as "conflicting definition values"?
#
#   nix-instantiate --eval --strict --json tests/nix/definitions.nix \
#     --arg modules '[ /abs/hosts/alkaid/configuration.nix /abs/generated/alkaid ]'
#
# gives `{ conflicts = [ { path; definitions = [ { file; value; } ... ]; } ... ]; defined = N; }`.
#
# This is not nixpkgs' module system (nixpkgs is not available where the tests run); it is a
# small model of the merge rules of nixpkgs' lib/modules.nix, enough for the definitions the
# hand-kept files, the generated modules and the profiles they import make:
#
# - `mkIf` (a false condition drops the definition), `mkMerge`, `mkOverride` (`mkDefault` 1000,
#   `mkForce` 50, `mkOptionDefault` 1500; a plain definition is 100; the lowest number wins and
#   the outermost override counts, as lib.modules' pushDownProperties leaves it), `mkOrder`
#   (`mkBefore`/`mkAfter`: order only);
# - attribute sets merge per attribute; lists concatenate; a string of an option whose last
#   name is in `linesOptions` (types.lines in NixOS) concatenates;
# - any other value (bool, int, float, string, path, null, a derivation) must be equal in every
#   definition of the winning priority: that is the error proxmox-lxc.nix's `useDHCP = false`
#   gives against a host file's `networking.useDHCP = true`.
#
# Modules are called with `lib` (the mk* functions above), `config` (the merged definitions, so
# `mkIf (!config.proxmoxLXC.manageNetwork)` is decided as NixOS decides it), `pkgs` (stubs) and
# `modulesPath` = ./profiles: a profile imported from nixpkgs (`modulesPath + "/x.nix"`) is read
# from our own summary of what that nixpkgs file defines. A profile without a summary fails the
# evaluation, so a new import cannot slip past the check. What nixpkgs' options declare (types,
# defaults the profiles do not define, assertions) is not modelled: /work/shared/nixos-eval and
# `nix flake check` evaluate against the real modules.
{
  modules,
  profiles ? ./profiles,
  linesOptions ? [
    "authentication"
    "content"
    "extraCommands"
    "extraConfig"
    "identMap"
    "postStart"
    "preStart"
    "preCheckRuleset"
    "ruleset"
    "script"
    "text"
  ],
}:
let
  inherit (builtins)
    all
    attrNames
    concatMap
    elem
    filter
    foldl'
    functionArgs
    head
    intersectAttrs
    isAttrs
    isFunction
    isList
    isString
    length
    listToAttrs
    map
    pathExists
    tail
    toString
    ;

  lib = rec {
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkOrder = priority: content: {
      _type = "order";
      inherit priority content;
    };
    mkBefore = mkOrder 500;
    mkAfter = mkOrder 1500;
  };

  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    postgresql_17 = fakeDrv "postgresql-17";
  };

  isType = t: v: isAttrs v && (v._type or null) == t;
  # An attribute set of option definitions (as opposed to an option's value).
  isTree = v: isAttrs v && !(v ? _type) && (v.type or null) != "derivation";

  # --- modules -> definitions ------------------------------------------------------------------
  args = {
    inherit lib pkgs config;
    modulesPath = profiles;
    options = { };
  };
  call = f: if isFunction f then f (intersectAttrs (functionArgs f) args) else f;
  load =
    m:
    let
      file = toString m;
      value =
        if !pathExists m then
          throw "definitions.nix: ${file} does not exist (a nixpkgs profile imported through modulesPath needs a summary under tests/nix/profiles/)"
        else
          call (import m);
      config' =
        if value ? config || value ? options then
          value.config or { }
        else
          removeAttrs value [
            "imports"
            "options"
            "_file"
            "key"
            "disabledModules"
            "meta"
          ];
    in
    [
      {
        inherit file;
        prio = 100;
        overridden = false;
        value = config';
      }
    ]
    ++ concatMap load (value.imports or [ ]);

  topDefs = concatMap load modules;

  # --- merging ------------------------------------------------------------------------------
  # Strip mkIf/mkMerge/mkOverride/mkOrder from the top of a definition's value.
  expand =
    d:
    let
      v = d.value;
    in
    if isType "if" v then
      (if v.condition then expand (d // { value = v.content; }) else [ ])
    else if isType "merge" v then
      concatMap (c: expand (d // { value = c; })) v.contents
    else if isType "override" v then
      expand (
        d
        // {
          value = v.content;
          prio = if d.overridden then d.prio else v.priority;
          overridden = true;
        }
      )
    else if isType "order" v then
      expand (d // { value = v.content; })
    else
      [ d ];

  # The definitions at one option path, merged: a tree of attributes, or a leaf.
  merge =
    defs:
    let
      ex = concatMap expand defs;
    in
    if ex != [ ] && all (d: isTree d.value) ex then
      {
        tree = true;
        children = listToAttrs (
          map (n: {
            name = n;
            value = merge (concatMap (d: if d.value ? ${n} then [ (d // { value = d.value.${n}; }) ] else [ ]) ex);
          }) (attrNames (foldl' (acc: d: acc // d.value) { } ex))
        );
      }
    else
      {
        tree = false;
        defs = ex;
      };

  minPrio = defs: foldl' (m: d: if d.prio < m then d.prio else m) 10000 defs;
  winners = defs: filter (d: d.prio == minPrio defs) defs;

  # The merged value, as modules read it through `config`.
  resolve =
    node:
    if node.tree then
      builtins.mapAttrs (_: resolve) node.children
    else
      let
        w = winners node.defs;
      in
      if w == [ ] then
        throw "definitions.nix: no definition left"
      else if all (d: isList d.value) w then
        concatMap (d: d.value) w
      else
        (head w).value;

  root = merge topDefs;
  config = resolve root;

  # --- conflicts ------------------------------------------------------------------------------
  scalar = v: !(isList v) && !(isFunction v);
  same = a: b: if isAttrs a && isAttrs b && a ? outPath && b ? outPath then a.outPath == b.outPath else a == b;
  conflictsAt =
    path: node:
    if node.tree then
      concatMap (n: conflictsAt (path ++ [ n ]) node.children.${n}) (attrNames node.children)
    else
      let
        w = winners node.defs;
        first = head w;
        lines = w != [ ] && isString first.value && elem (builtins.elemAt path (length path - 1)) linesOptions;
        differ = filter (d: !(same d.value first.value)) (tail w);
      in
      if length w < 2 || lines || !(all (d: scalar d.value) w) || differ == [ ] then
        [ ]
      else
        [
          {
            path = builtins.concatStringsSep "." path;
            priority = first.prio;
            definitions = map (d: {
              inherit (d) file;
              value = if isAttrs d.value then d.value.name or "<derivation>" else d.value;
            }) w;
          }
        ];

  count =
    node: if node.tree then foldl' (n: c: n + count c) 0 (builtins.attrValues node.children) else 1;
in
{
  conflicts = conflictsAt [ ] root;
  defined = count root;
}
