"""DVC stage `report`: see `catride report --help`; the logic lives in catride_core."""

from catride_core.commands.report import report

if __name__ == "__main__":
    report()
