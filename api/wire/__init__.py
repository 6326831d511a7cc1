"""What both servers (the registry and the FileService) and every client share: the RFC 9421
request-signature profile, problem documents, the access log, serving on waitress."""
