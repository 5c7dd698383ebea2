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
