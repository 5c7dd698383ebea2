/// The version of this build of every Felhom executable (`--version`, `/healthz`, agent reports).
public enum FelhomVersion {
    public static let current = "0.2.0"
}
