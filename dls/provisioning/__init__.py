"""The device-facing provisioning protocols: Unify WPI and 3rd-party configuration files."""
