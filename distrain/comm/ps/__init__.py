"""The ZeroMQ parameter-server backend: protocol (wire format), server, client (the Communicator)."""
