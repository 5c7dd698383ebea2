// The Proxmox client is configured with FelhomHTTP's transport and trust types; re-export them so
// callers need one import.
@_exported import FelhomHTTP
