"""The ``liftlake`` command (main) and the command-line contract every job shares (runner: arguments, config
print, exit codes)."""
