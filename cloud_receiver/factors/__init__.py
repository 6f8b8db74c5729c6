"""Emission and standard-coal factor tables, shipped as data (see ``cloud_receiver.carbon``)."""
