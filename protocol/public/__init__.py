"""The public half of the protocol: nothing here can decrypt, hold a private key or read a sealed
message. The gateway may import this package and only this package."""
