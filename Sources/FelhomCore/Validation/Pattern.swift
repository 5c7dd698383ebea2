import Foundation

/// Whole-string pattern checks for validation.
///
/// A validation regex must hold for the whole input: ICU's `$` also matches just before a final
/// newline, so `^[a-z]+$` accepts `"abc\n"`. These checks anchor at the true start and end
/// (`\A…\z`) instead; every validation in the codebase goes through them.
public enum Pattern {
    /// Whether all of `s` matches `pattern` (written without `^`/`$` anchors).
    public static func whole(_ s: String, _ pattern: String) -> Bool {
        s.range(of: #"\A(?:"# + pattern + #")\z"#, options: .regularExpression) != nil
    }
}

extension Pattern {
    /// An e-mail address as mail systems accept it: a dot-atom local part (no quotes, spaces,
    /// CR/LF or angle brackets) `@` a domain name with a dot; at most 254 characters.
    public static func isEmail(_ s: String) -> Bool {
        s.count <= 254 && whole(s, email)
    }

    /// The e-mail rule (unanchored; also published, anchored, in the hub's OpenAPI document).
    public static let email =
        #"(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"#
}
