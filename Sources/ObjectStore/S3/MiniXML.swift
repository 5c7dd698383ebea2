import Foundation

/// Just enough XML for S3's answers: the text of named elements, in order, with the five
/// entities and numeric references decoded. S3's answers are flat and small (the transport caps
/// them at 16 MiB); no DTDs, attributes or namespaces are interpreted, so a hostile server's XML
/// cannot expand or reach anything.
enum MiniXML {
    /// The inner text (raw, undecoded) of every `<name>…</name>` (or `<name attr…>…</name>`) at any depth.
    static func blocks(_ name: String, in xml: Substring) -> [Substring] {
        var out: [Substring] = []
        var rest = xml[...]
        let close = "</\(name)>"
        while let open = rest.range(of: "<\(name)") {
            let after = rest[open.upperBound...]
            guard let next = after.first, next == ">" || next == " " || next == "/" else {
                rest = after
                continue
            }
            guard let tagEnd = after.firstIndex(of: ">") else { break }
            if after[after.startIndex..<tagEnd].hasSuffix("/") {  // <name/>
                out.append(after[tagEnd..<tagEnd])
                rest = after[after.index(after: tagEnd)...]
                continue
            }
            let body = after[after.index(after: tagEnd)...]
            guard let end = body.range(of: close) else { break }
            out.append(body[..<end.lowerBound])
            rest = body[end.upperBound...]
        }
        return out
    }

    static func blocks(_ name: String, in xml: String) -> [Substring] { blocks(name, in: xml[...]) }

    /// The decoded text of the first `<name>` in `xml`.
    static func text(_ name: String, in xml: Substring) -> String? { blocks(name, in: xml).first.map(unescape) }

    static func unescape(_ raw: Substring) -> String {
        guard raw.contains("&") else { return String(raw) }
        var out = ""
        var i = raw.startIndex
        while i < raw.endIndex {
            if raw[i] == "&", let semi = raw[i...].prefix(12).firstIndex(of: ";") {
                let entity = raw[raw.index(after: i)..<semi]
                var decoded: String?
                switch entity {
                case "amp": decoded = "&"
                case "lt": decoded = "<"
                case "gt": decoded = ">"
                case "quot": decoded = "\""
                case "apos": decoded = "'"
                default:
                    if entity.hasPrefix("#x"), let v = UInt32(entity.dropFirst(2), radix: 16), let s = Unicode.Scalar(v) {
                        decoded = String(Character(s))
                    } else if entity.hasPrefix("#"), let v = UInt32(entity.dropFirst()), let s = Unicode.Scalar(v) {
                        decoded = String(Character(s))
                    }
                }
                if let decoded {
                    out += decoded
                    i = raw.index(after: semi)
                    continue
                }
            }
            out.append(raw[i])
            i = raw.index(after: i)
        }
        return out
    }

    /// `text` with `& < > " '` escaped, for request bodies.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}
