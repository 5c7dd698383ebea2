import FelhomCore
import FelhomTestSupport
import Foundation
import Testing

@testable import FelhomHub

/// Issue 11: one registry of event types; every registered type has both mail phrases, and the
/// policy, templates and customer preferences all read it.
@Suite struct EventRegistryTests {
    @Test func everyRegisteredTypeHasBothTemplates() {
        #expect(EventRegistry.all.count == EventRegistry.byName.count, "a type is registered twice")
        for t in EventRegistry.all {
            #expect(!t.english.isEmpty && !t.hungarian.isEmpty, "\(t.name) lacks a phrase")
            #expect(!t.postedBy.isEmpty, "\(t.name) says nobody posts it")
            let ev = HubEvent(
                id: "e", at: Date(), source: .hub, hostID: "h", guestID: nil, customerID: nil, type: t.name, severity: t.severity, data: [:])
            #expect(Templates.render(ev, hostName: "box", language: .en).subject == "[felhom] box \(t.english)")
            #expect(Templates.render(ev, hostName: "box", language: .hu).subject == "Felhom: a(z) box gép \(t.hungarian)")
        }
    }

    @Test func policyAndPreferencesComeFromTheRegistry() {
        #expect(EventPolicy.hubOnly.contains("node_down") && !EventPolicy.hubOnly.contains("backup_failed"))
        #expect(EventPolicy.hostTypes["backup_failed"] == .critical && EventPolicy.hostTypes["db_dump_failed"] == nil)
        #expect(EventPolicy.guestTypes["db_dump_failed"] == .warning)
        #expect(Hub.customerNotifiableTypes.isSuperset(of: ["node_down", "backup_failed", "expected_backup_missed", "restore_test_failed"]))
        #expect(Hub.customerNotifiableTypes.allSatisfy { EventRegistry.byName[$0]?.customerMailable == true })
        // Everything the hub mails by default is registered (so it has both templates).
        let defaults = NotificationSettings()
        #expect(defaults.operatorTypes.union(defaults.customerDefaultTypes).allSatisfy { EventRegistry.byName[$0] != nil })
    }
}
