/// Text from elsewhere made safe to print on an operator's terminal.
public enum TerminalText {
    /// `s` with every character outside printable ASCII (control characters, ANSI escapes,
    /// bidirectional overrides, look-alike letters…) written as `\u{XXXX}`, and backslashes doubled,
    /// so what the terminal shows is exactly what the bytes say.
    public static func escaped(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            if u == "\\" {
                out += "\\\\"
            } else if u.value >= 0x20 && u.value < 0x7F {
                out.unicodeScalars.append(u)
            } else {
                out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    /// `s` with control characters (C0 but newline, DEL, C1) and bidirectional controls written
    /// as `\u{XXXX}`; other characters (— → …) are kept. For lines that mix our own wording with
    /// text from elsewhere (a hub's error message), so that text cannot move the cursor, clear
    /// the screen or reorder what the line shows.
    public static func withoutControls(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            let v = u.value
            let control =
                (v < 0x20 && v != 0x0A) || (0x7F...0x9F).contains(v) || (0x202A...0x202E).contains(v)
                || (0x2066...0x2069).contains(v) || v == 0x200E || v == 0x200F || v == 0x061C
            if control {
                out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
