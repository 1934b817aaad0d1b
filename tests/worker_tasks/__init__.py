"""Task modules that integration tests load into real workers with ``--include``."""
