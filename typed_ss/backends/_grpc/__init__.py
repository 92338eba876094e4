"""Code generated from proto/typed_ss/multihome/v1/multihome.proto (``make proto``); do not edit."""
