"""drivelab.core: what every layer shares, in one place each.

- ``errors``: ``DrivelabError`` (the base of every error a user can cause) and the common kinds.
- ``files``: atomic writes of files and folders, SHA-256 of bytes and files.
- ``provenance``: machine, package versions, git commit and command, in one schema.
- ``config``: the one typed config parser (mappings, YAML, ``--set key=value`` overrides).

It imports no other drivelab package and no torch, and changes no process state on import.
"""
