/// The dashboard's Mustache templates. `{{x}}` escapes HTML; the layout receives the page body,
/// already rendered (and escaped), through `{{{body}}}`.
enum DashboardTemplates {
    static let all: [String: String] = [
        "layout": layout, "login": login, "fleet": fleet, "host": host, "events": events, "desired": desired,
        "signedOps": signedOps, "customers": customers, "error": error,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · felhom</title>
        <style>
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
        header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
        header a{color:#cfd6e4;text-decoration:none}header a:hover{color:#fff}header .brand{font-weight:700;color:#fff;margin-right:1rem}
        header form{margin-left:auto}
        main{padding:1.2rem;max-width:1200px;margin:auto}
        h1{font-size:1.35rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
        table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
        th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #eceef2;vertical-align:top}
        th{background:#f0f2f5;font-weight:600;font-size:.85rem;color:#4a5263}
        tr:last-child td{border-bottom:0}
        .pill{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600}
        .ok{background:#d9f2e1;color:#19683a}.warn{background:#fff1cc;color:#7a5600}.bad{background:#fbdada;color:#8f1d1d}.muted{background:#e8ebf0;color:#4a5263}
        .small{font-size:.85rem;color:#5b6475}
        code,pre,textarea{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
        pre{white-space:pre-wrap;background:#fff;border:1px solid #dde1e8;padding:.6rem;margin:0}
        textarea{width:100%;min-height:22rem;box-sizing:border-box}
        button{font:inherit;padding:.35rem .9rem;border-radius:.3rem;border:1px solid #8a93a6;background:#fff;cursor:pointer}
        button.primary{background:#2451b7;border-color:#2451b7;color:#fff}
        .notice{background:#e6efff;border:1px solid #b8ccf5;padding:.5rem .8rem;margin-bottom:1rem}
        .error{background:#fbdada;border:1px solid #eaa;padding:.5rem .8rem;margin-bottom:1rem}
        form.inline{display:inline}
        </style>
        </head>
        <body>
        {{#signedIn}}
        <header>
          <span class="brand">felhom</span>
          <a href="/">Fleet</a><a href="/events">Events</a><a href="/signed-ops">Signed ops</a><a href="/customers">Customers</a>
          <form method="post" action="/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button>Sign out</button></form>
          <form method="post" action="/logout-everywhere"><input type="hidden" name="csrf" value="{{csrf}}"><button title="End every dashboard session in every browser">Sign out everywhere</button></form>
        </header>
        {{/signedIn}}
        <main>
        {{#notice}}<div class="notice">{{notice}}</div>{{/notice}}
        {{{body}}}
        </main>
        </body>
        </html>
        """

    static let login = """
        <h1>Sign in to the felhom hub</h1>
        {{#failed}}<div class="error">That key was not accepted.</div>{{/failed}}
        {{#locked}}<div class="error">Too many wrong keys were tried. Sign-in is paused for a few minutes; the API keeps working.</div>{{/locked}}
        <form method="post" action="/login">
          <p><label>Operator key<br><input type="password" name="key" size="48" autocomplete="current-password" required></label></p>
          <p><button class="primary">Sign in</button></p>
        </form>
        """

    static let fleet = """
        <h1>Fleet</h1>
        <table>
        <tr><th>Host</th><th>Customer</th><th>Liveness</th><th>Last report</th><th>Last backup</th><th>Last restore test</th><th>Verified restorable</th><th>Pending ops</th><th>Agent</th></tr>
        {{#hosts}}
        <tr>
          <td><a href="/hosts/{{id}}">{{name}}</a></td>
          <td>{{customer}}</td>
          <td><span class="pill {{livenessClass}}">{{liveness}}</span></td>
          <td>{{#lastReport}}<span title="{{exact}}">{{ago}}</span>{{/lastReport}}{{^lastReport}}<span class="small">never</span>{{/lastReport}}</td>
          <td>{{#lastBackup}}<span class="pill {{cls}}" title="{{exact}}">{{label}} {{ago}}</span>{{/lastBackup}}{{^lastBackup}}<span class="small">none</span>{{/lastBackup}}</td>
          <td>{{#lastRestore}}<span class="pill {{cls}}" title="{{exact}}">{{label}} {{ago}}</span>{{/lastRestore}}{{^lastRestore}}<span class="small">none</span>{{/lastRestore}}</td>
          <td>{{#verified}}<span title="{{exact}}">{{ago}}</span>{{/verified}}{{^verified}}<span class="pill bad">never</span>{{/verified}}</td>
          <td>{{#pending}}<a href="/signed-ops?host_id={{id}}"><span class="pill warn">{{pending}}</span></a>{{/pending}}{{^pending}}<span class="small">0</span>{{/pending}}</td>
          <td>{{#agentVersion}}<code>{{agentVersion}}</code>{{/agentVersion}}{{^agentVersion}}<span class="small">?</span>{{/agentVersion}}{{#updateFailed}} <span class="pill bad" title="{{reason}}">{{component}} {{version}} {{label}}</span>{{/updateFailed}}</td>
        </tr>
        {{/hosts}}
        {{^hosts}}<tr><td colspan="9" class="small">No hosts yet. Create a customer and a host through the API (docs/operator-guide.md).</td></tr>{{/hosts}}
        </table>
        """

    static let host = """
        <h1>{{name}} <span class="pill {{livenessClass}}">{{liveness}}</span>{{#blocked}} <span class="pill bad">blocked</span>{{/blocked}}</h1>
        <p class="small">Customer {{customer}} · host id <code>{{id}}</code> · desired generation {{generation}} ·
        applied {{#appliedBehind}}<span class="pill warn">{{applied}}</span>{{/appliedBehind}}{{^appliedBehind}}{{applied}}{{/appliedBehind}} ·
        last report {{#lastReport}}<span title="{{exact}}">{{ago}}</span>{{/lastReport}}{{^lastReport}}never{{/lastReport}}
        · <a href="/hosts/{{id}}/desired">Edit desired state</a>
        {{#blocked}}<form class="inline" method="post" action="/hosts/{{id}}/unblock"><input type="hidden" name="csrf" value="{{csrf}}"> · <button>Unblock host</button></form>{{/blocked}}
        {{^blocked}}<form class="inline" method="post" action="/hosts/{{id}}/block"><input type="hidden" name="csrf" value="{{csrf}}"> · <button>Block host</button></form>{{/blocked}}</p>
        {{#blocked}}<p class="error">Blocked: this box's reports are not stored, it gets no desired state or signed ops and only reports.</p>{{/blocked}}
        <h2>Guests: desired vs actual {{#inSync}}<span class="pill ok">in sync</span>{{/inSync}}{{^inSync}}<span class="pill warn">drift</span>{{/inSync}}</h2>
        <table>
        <tr><th>vmid</th><th>Name</th><th>State</th><th>Desired run state</th><th>Actual</th><th>Differences</th></tr>
        {{#guests}}
        <tr><td>{{vmid}}</td><td>{{name}}</td><td><span class="pill {{cls}}">{{state}}</span></td><td>{{desired}}</td><td>{{actual}}</td>
        <td class="small">{{#differences}}{{field}}: {{desired}} → {{actual}}<br>{{/differences}}</td></tr>
        {{/guests}}
        {{^guests}}<tr><td colspan="6" class="small">No desired state published and no guests reported.</td></tr>{{/guests}}
        </table>
        <h2>Host</h2>
        {{#metrics}}<p class="small">PVE {{pve}} · kernel {{kernel}} · memory {{memory}} · disk {{disk}} · uptime {{uptime}}</p>{{/metrics}}
        {{^metrics}}<p class="small">No report yet.</p>{{/metrics}}
        <h2>Capacity</h2>
        <table><tr><th>Resource</th><th>Allocated by the desired state</th><th></th></tr>
        {{#capacity}}<tr><td>{{label}}</td><td><meter min="0" max="{{max}}" value="{{value}}" high="{{max}}"></meter></td><td class="small">{{text}}{{#over}} <span class="pill bad">over</span>{{/over}}</td></tr>{{/capacity}}
        </table>
        <h2>Data protection</h2>
        <p>Last verified restorable: {{#verified}}<b title="{{exact}}">{{ago}}</b>{{/verified}}{{^verified}}<span class="pill bad">never</span>{{/verified}}
        {{#trend}} · time to restore, latest first: {{trend}}{{/trend}}</p>
        <table><tr><th>Guest</th><th>Last backup</th><th>Consistency</th><th>Key</th><th>Verification</th><th>Last failure</th><th>Last restore test</th></tr>
        {{#protection}}<tr><td>{{vmid}}</td><td>{{#backupAgo}}<span title="{{backupExact}}">{{backupAgo}}</span>{{/backupAgo}}{{^backupAgo}}<span class="pill bad">none</span>{{/backupAgo}}</td><td>{{consistency}}</td><td class="small"><code>{{key}}</code></td><td>{{verification}}</td><td>{{#failure}}<span class="pill bad">{{failure}}</span> <span class="small">{{failureAgo}}</span>{{/failure}}</td><td>{{#restore}}<span class="pill {{restoreCls}}">{{restore}}</span> <span class="small">{{restoreDetail}}</span>{{/restore}}</td></tr>{{/protection}}
        {{^protection}}<tr><td colspan="7" class="small">No backups reported.</td></tr>{{/protection}}
        </table>
        <form class="inline" method="post" action="/hosts/{{id}}/requests"><input type="hidden" name="csrf" value="{{csrf}}">
        <label>Guest <input name="vmid" size="8" inputmode="numeric" required></label>
        <select name="kind"><option value="backup">Back up now (app-consistent)</option><option value="restore_test">Restore test now</option></select>
        <button>Ask the box</button></form>
        {{#hasRoutes}}<h2>Routes</h2>
        <table><tr><th>Route</th><th>Listen port</th><th>State</th><th>Reason</th><th>Open connections</th><th>Checked</th></tr>
        {{#routes}}<tr><td>{{id}}</td><td>{{port}}</td><td><span class="pill {{cls}}">{{state}}</span></td><td class="small">{{reason}}</td><td>{{open}}</td><td class="small">{{checked}}</td></tr>{{/routes}}
        </table>{{/hasRoutes}}
        {{#hasVolumeSnapshots}}<h2>Volume snapshots</h2>
        <table><tr><th>Guest</th><th>Mount</th><th>Volume</th><th>State</th><th>Reason</th><th>Last snapshot</th></tr>
        {{#volumeSnapshots}}<tr><td>{{vmid}}</td><td>{{key}}</td><td>{{volume}}</td><td><span class="pill {{cls}}">{{state}}</span></td><td class="small">{{reason}}</td><td class="small">{{last}}</td></tr>{{/volumeSnapshots}}
        </table>{{/hasVolumeSnapshots}}
        <h2>Recent events</h2>
        <table><tr><th>When</th><th>Type</th><th>Severity</th><th>Details</th></tr>
        {{#events}}<tr><td><span title="{{exact}}">{{ago}}</span></td><td>{{type}}</td><td><span class="pill {{cls}}">{{severity}}</span></td><td class="small"><code>{{data}}</code></td></tr>{{/events}}
        {{^events}}<tr><td colspan="4" class="small">No events.</td></tr>{{/events}}
        </table>
        """

    static let events = """
        <h1>Events</h1>
        <form method="get" action="/events">
          <label>Host <select name="host_id"><option value="">all</option>{{#hostOptions}}<option value="{{id}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/hostOptions}}</select></label>
          <label>Type <input name="type" value="{{type}}" placeholder="e.g. node_down"></label>
          <button>Filter</button>
        </form>
        <p></p>
        <table><tr><th>When</th><th>Host</th><th>Type</th><th>Severity</th><th>Source</th><th>Details</th></tr>
        {{#events}}<tr><td><span title="{{exact}}">{{ago}}</span></td><td>{{host}}</td><td>{{type}}</td><td><span class="pill {{cls}}">{{severity}}</span></td><td>{{source}}</td><td class="small"><code>{{data}}</code></td></tr>{{/events}}
        {{^events}}<tr><td colspan="6" class="small">No events match.</td></tr>{{/events}}
        </table>
        """

    static let desired = """
        <h1>Desired state of {{name}}</h1>
        <p class="small">Published generation {{generation}}{{#unpublished}} · <span class="pill warn">draft has unpublished changes</span>{{/unpublished}}.
        Publishing bumps the generation; the agent picks it up within seconds. It never touches apps.</p>
        {{#error}}<div class="error">{{error}}</div>{{/error}}
        <form method="post" action="/hosts/{{id}}/desired">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <textarea name="spec" spellcheck="false">{{spec}}</textarea>
          <p><button>Save draft</button>
          <button class="primary" formaction="/hosts/{{id}}/desired/publish">Save and publish</button></p>
        </form>
        <p class="small">Save and publish saves what is in the editor first: an edit is never lost or published unseen.</p>
        """

    static let signedOps = """
        <h1>Signed-op queue</h1>
        <p class="small">Destructive ops wait here for the operator's SSH signature: sign them on your workstation with
        <code>felhom sign --hub URL --key ~/.ssh/id_ed25519</code>. The agent verifies every signature itself.</p>
        <table><tr><th>Created</th><th>Status</th><th>Customer / host</th><th>What</th><th>Expires</th><th>Outcome</th></tr>
        {{#ops}}<tr><td><span title="{{exact}}">{{ago}}</span></td><td><span class="pill {{cls}}">{{status}}</span></td><td>{{customer}} / <a href="/hosts/{{hostID}}">{{host}}</a></td>
        <td class="small">{{summary}}</td><td><span title="{{expiresExact}}">{{expires}}</span></td><td class="small">{{reason}}{{#cancellable}}<form class="inline" method="post" action="/signed-ops/{{id}}/cancel"><input type="hidden" name="csrf" value="{{csrf}}"><button>Cancel</button></form>{{/cancellable}}</td></tr>{{/ops}}
        {{^ops}}<tr><td colspan="6" class="small">The queue is empty.</td></tr>{{/ops}}
        </table>
        """

    static let customers = """
        <h1>Customers</h1>
        <table><tr><th>Name</th><th>Domain</th><th>E-mail</th><th>Language</th><th>Time zone</th><th>Hosts</th><th>Usage / quota</th><th>Mailed about</th><th>Status</th></tr>
        {{#customers}}<tr><td>{{name}}</td><td>{{domain}}</td><td>{{email}}</td><td>{{language}}</td><td>{{timezone}}</td><td>{{hosts}}</td>
        <td class="small">{{#usage}}{{what}} {{used}}{{#limit}} / {{limit}}{{/limit}}{{#over}} <span class="pill bad">over</span>{{/over}}<br>{{/usage}}</td><td class="small">{{types}}</td>
        <td>{{#suspended}}<span class="pill bad">suspended</span> <form class="inline" method="post" action="/customers/{{id}}/resume"><input type="hidden" name="csrf" value="{{csrf}}"><button>Resume</button></form>{{/suspended}}
        {{^suspended}}<form class="inline" method="post" action="/customers/{{id}}/suspend"><input type="hidden" name="csrf" value="{{csrf}}"><button>Suspend</button></form>{{/suspended}}</td></tr>{{/customers}}
        {{^customers}}<tr><td colspan="9" class="small">No customers yet.</td></tr>{{/customers}}
        </table>
        """

    static let error = """
        <h1>{{title}}</h1>
        <p>{{message}}</p>
        <p><a href="/">Back to the fleet</a></p>
        """
}
