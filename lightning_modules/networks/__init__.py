"""The registered networks: each module below registers its classes with ``lightning_modules.registry``."""

from lightning_modules.networks import dilated_cnn, sattisunet, swinunet, transunet, unet

__all__ = ["dilated_cnn", "sattisunet", "swinunet", "transunet", "unet"]
