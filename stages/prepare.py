"""DVC stage `prepare`: see `catride prepare --help`; the logic lives in catride_core."""

from catride_core.commands.prepare import prepare

if __name__ == "__main__":
    prepare()
