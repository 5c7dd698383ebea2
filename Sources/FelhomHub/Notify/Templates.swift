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
            let what: String
            switch e.type {
            case "node_stale": what = "has not reported for a while (stale)"
            case "node_down": what = "is DOWN: no report within the down threshold"
            case "node_recovered": what = "is reporting again (recovered)"
            case "backup_failed": what = "reported a FAILED backup"
            case "expected_backup_missed": what = "has not backed up today (deadline passed)"
            case "restore_test_failed": what = "FAILED its restore test"
            case "db_dump_failed": what = "reported a failed database dump"
            case "retrieval_locked": what = "— a customer's retrieval was locked after repeated wrong passphrases"
            case "host_blocked": what = "was BLOCKED by the operator"
            case "customer_suspended": what = "— its customer was SUSPENDED by the operator"
            default: what = "reported \(e.type)"
            }
            return ("[felhom] \(hostName) \(what)",
                    "Host \(hostName) (\(e.hostID ?? "-")) \(what).\nEvent: \(e.type), severity \(e.severity.rawValue), at \(when).\n"
                        + EventPolicy.mailable(e).map { "\($0.0): \($0.1)\n" }.joined())
        case .hu:
            let what: String
            switch e.type {
            case "node_stale": what = "egy ideje nem jelentkezett"
            case "node_down": what = "nem elérhető"
            case "node_recovered": what = "újra elérhető"
            case "backup_failed": what = "mentése nem sikerült"
            case "expected_backup_missed": what = "mai mentése elmaradt"
            case "restore_test_failed": what = "visszaállítási próbája nem sikerült"
            case "db_dump_failed": what = "adatbázis-mentése nem sikerült"
            default: what = "eseményt jelzett: \(e.type)"
            }
            return ("Felhom: a(z) \(hostName) gép \(what)",
                    "Kedves Ügyfelünk!\n\nA(z) \(hostName) gépe \(what) (\(when)).\nMunkatársaink értesítést kaptak, és szükség esetén felveszik Önnel a kapcsolatot.\n\nÜdvözlettel:\nFelhom\n")
        }
    }
}
