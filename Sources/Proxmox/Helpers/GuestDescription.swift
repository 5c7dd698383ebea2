/// Proxmox's round trip of a guest description.
///
/// PVE stores a description as `#` comment lines and appends `"\n"` after every line when reading it
/// back; blank lines are dropped. So `"hello"` comes back as `"hello\n"`. Compare descriptions only
/// after ``normalized(_:)`` or the agent would rewrite them forever.
public enum GuestDescription {
    /// What Proxmox returns after storing `text`: each non-empty line followed by `"\n"`.
    public static func normalized(_ text: String) -> String {
        // Split on LF only, as Perl's split(/\n/) does: a CR before it stays part of the line.
        // (Splitting the String would treat CRLF as one character.)
        var out = String.UnicodeScalarView()
        for line in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: true) {
            out.append(contentsOf: line)
            out.append("\n")
        }
        return String(out)
    }

    /// True when two descriptions are the same after the Proxmox round trip.
    public static func equivalent(_ a: String?, _ b: String?) -> Bool {
        normalized(a ?? "") == normalized(b ?? "")
    }
}
