import Foundation
import Synchronization

/// Wall-clock time as a dependency, so tests can move time by hand.
public protocol WallClock: Sendable {
    /// The current instant.
    func now() -> Date
}

/// The real system clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
}

/// A clock that only moves when a test says so.
public final class ManualClock: WallClock {
    private let current: Mutex<Date>

    /// Starts at `start` (default: 2026-01-01T00:00:00Z).
    public init(start: Date = Date(timeIntervalSince1970: 1_767_225_600)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    /// Moves the clock forward by `seconds`.
    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    /// Sets the clock to `date`.
    public func set(_ date: Date) {
        current.withLock { $0 = date }
    }
}
