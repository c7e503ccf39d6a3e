"""The speech-to-speech (STS) service: Socket.IO protocol, engines, server and client."""
