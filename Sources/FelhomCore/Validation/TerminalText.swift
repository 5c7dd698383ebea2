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
}
