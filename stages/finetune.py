"""DVC stage `finetune`: see `catride finetune --help`; the logic lives in catride_core."""

from catride_core.commands.finetune import finetune

if __name__ == "__main__":
    finetune()
