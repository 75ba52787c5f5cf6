from .wrs_hook import WRSHook

__all__ = ['WRSHook']
