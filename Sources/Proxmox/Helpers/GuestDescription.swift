/// Proxmox's round trip of a guest description.
///
/// PVE stores a description as `#` comment lines and appends `"\n"` after every line when reading it
/// back; blank lines are dropped. So `"hello"` comes back as `"hello\n"`. Compare descriptions only
/// after ``normalized(_:)`` or the agent would rewrite them forever.
public enum GuestDescription {
    /// What Proxmox returns after storing `text`: each non-empty line followed by `"\n"`.
    public static func normalized(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: true)
            .map { line -> Substring in line.hasSuffix("\r") ? line.dropLast() : line }
            .filter { !$0.isEmpty }
            .map { $0 + "\n" }
            .joined()
    }

    /// True when two descriptions are the same after the Proxmox round trip.
    public static func equivalent(_ a: String?, _ b: String?) -> Bool {
        normalized(a ?? "") == normalized(b ?? "")
    }
}
