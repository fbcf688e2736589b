"""DVC stage `check`: see `catride check --help`; the logic lives in catride_core."""

from catride_core.commands.check import check

if __name__ == "__main__":
    check()
