import FelhomCore
import Foundation

extension Agent {
    /// The scheduled escrow drill: once escrow init has run here, every `escrow.drill_days` the
    /// hub's copy of the wrapped key must open to the key backups use (`escrow_verified`, or
    /// `escrow_drill_failed`, critical).
    func escrowTick() async {
        guard let escrow, escrow.initialized, let boxKey = backups?.runner.boxKey else { return }
        let now = clock.now()
        if let last = escrow.lastDrill, now.timeIntervalSince(last) < Double(escrowDrillDays) * 86_400 { return }
        let r = await escrow.drill(boxKey: boxKey, now: now)
        if r.type == "escrow_verified" {
            logger.info("escrow drill: the hub's copy of the backup key opens to the key in use")
        } else {
            logger.error("escrow drill FAILED (\(r.data["reason"]?.stringValue ?? "?")): \(r.data["message"]?.stringValue ?? "")")
        }
        await post(r)
    }
}
