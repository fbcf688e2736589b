"""DVC stage `pretrain`: see `catride pretrain --help`; the logic lives in catride_core."""

from catride_core.commands.pretrain import pretrain

if __name__ == "__main__":
    pretrain()
