"""The stage commands, one module per pipeline stage; ``catride_core.cli`` assembles them into one group.

Each ``stages/<stage>.py`` imports only its own command module, so a stage
depends on that module and the core code it really imports, not on every
other command.
"""
