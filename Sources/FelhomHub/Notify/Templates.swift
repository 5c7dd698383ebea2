import FelhomCore
import Foundation

/// Mail texts: English for the operator, Hungarian for customers.
public enum Templates {
    public enum Language: String, Sendable { case en, hu }

    /// Subject and body for an event.
    public static func render(_ e: HubEvent, hostName: String, language: Language) -> (subject: String, body: String) {
        let when = e.at.formatted(.iso8601)
        switch language {
        case .en:
            let what = EventRegistry.byName[e.type]?.english ?? "reported \(e.type)"
            return (
                "[felhom] \(hostName) \(what)",
                "Host \(hostName) (\(e.hostID ?? "-")) \(what).\nEvent: \(e.type), severity \(e.severity.rawValue), at \(when).\n"
                    + EventPolicy.mailable(e).map { "\($0.0): \($0.1)\n" }.joined()
            )
        case .hu:
            let what = EventRegistry.byName[e.type]?.hungarian ?? "eseményt jelzett: \(e.type)"
            return (
                "Felhom: a(z) \(hostName) gép \(what)",
                "Kedves Ügyfelünk!\n\nA(z) \(hostName) gépe \(what) (\(when)).\nMunkatársaink értesítést kaptak, és szükség esetén felveszik Önnel a kapcsolatot.\n\nÜdvözlettel:\nFelhom\n"
            )
        }
    }
}
