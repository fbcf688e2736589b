"""DVC stage `adaptive`: see `catride adaptive --help`; the logic lives in catride_core."""

from catride_core.commands.adaptive import adaptive

if __name__ == "__main__":
    adaptive()
