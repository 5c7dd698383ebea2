import Foundation

/// The box's own limit on which public ports routes may open (`routes.allowed_ports`, e.g.
/// `"80,443,8000-8099"`): the hub is not trusted to choose any port on a customer's network, so
/// a route outside the list is not started (`listen_port_not_allowed`), whatever the hub says.
public struct PortRanges: Sendable, Equatable, CustomStringConvertible {
    public let ranges: [ClosedRange<Int>]

    /// Why a list does not parse; the message names the bad item.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Parses `"80,443,8000-8099"`: ports and inclusive ranges, 1–65535, separated by commas.
    public init(parsing text: String) throws(ParseError) {
        var ranges: [ClosedRange<Int>] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = raw.trimmingCharacters(in: .whitespaces)
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...2).contains(bounds.count), let low = bounds[0], let high = bounds[bounds.count - 1],
                (1...65535).contains(low), (1...65535).contains(high), low <= high
            else {
                throw ParseError(message: "'\(item.prefix(40))' is not a port or a range of ports (1-65535, e.g. 443 or 8000-8099)")
            }
            ranges.append(low...high)
        }
        self.ranges = ranges
    }

    public func contains(_ port: Int) -> Bool { ranges.contains { $0.contains(port) } }

    public var description: String {
        ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
    }
}
