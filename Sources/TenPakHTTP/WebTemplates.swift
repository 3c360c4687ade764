// The templates of the web pages (SPEC section 14.8), in Mustache. Every value goes through
// `{{name}}`, which HTML-escapes `< > & " '`: model names, revision names, paths, token names and
// model-card text are the uploader's, so no template uses the unescaped forms `{{{…}}}` or `{{&…}}`
// (a test checks). Numbers inside the SVG chart are computed by the server and escaped all the same.
// Kept in the binary rather than in files beside it, so `tpstore serve` needs no resource directory.
import Mustache

enum WebTemplates {
    static let top = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{#chrome}}{{title}}{{/chrome}} · tpstore</title>
        <style>
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
        header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;flex-wrap:wrap;align-items:baseline}
        header a{color:#fff;text-decoration:none;font-weight:600}
        header .who{margin-left:auto;color:#c9cfda;font-size:.9rem}
        header .who a{font-weight:400;color:#c9cfda;text-decoration:underline}
        main{max-width:72rem;margin:0 auto;padding:1rem}
        h1{font-size:1.5rem;margin:.4rem 0;word-break:break-all}
        h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
        a{color:#1f5fbf}
        table{border-collapse:collapse;width:100%;background:#fff}
        th,td{padding:.35rem .5rem;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
        th{font-weight:600;font-size:.85rem;color:#4a5263}
        td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        td.p{word-break:break-all}
        .scroll{overflow-x:auto}
        .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9.5rem,1fr));gap:.6rem}
        .card{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:.6rem .8rem}
        .card b{display:block;font-size:1.2rem}
        .box{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:.6rem .8rem;margin:.6rem 0}
        pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e3e6eb;padding:.8rem;max-height:32rem;overflow:auto}
        code{word-break:break-all}
        svg{width:100%;height:auto;background:#fff;border:1px solid #e3e6eb;border-radius:6px}
        .muted{color:#5d6577}
        .stale{color:#9a5b00}
        input{padding:.4rem;font-size:1rem;max-width:100%}
        form.inline{display:inline}
        form.inline button{background:none;border:0;padding:0;color:#c9cfda;text-decoration:underline;font:inherit;cursor:pointer}
        @media (max-width:42rem){.wide{display:none}main{padding:.6rem}}
        </style>
        </head>
        <body>
        <header><a href="/">tpstore</a><a href="/">Models</a><a href="/~/dashboard">Dashboard</a><span class="who">{{#chrome}}{{who}}{{#signIn}} · <a href="/~/login">sign in</a>{{/signIn}}{{#signOut}} <form class="inline" method="post" action="/~/logout"><button type="submit">sign out</button></form>{{/signOut}}{{/chrome}}</span></header>
        <main>

        """

    static let bottom = """
        </main>
        </body>
        </html>

        """

    static let models = """
        {{>top}}<h1>Models</h1>
        <form method="get" action="/" role="search"><input type="search" name="q" value="{{query}}" placeholder="Search by name" aria-label="Search models by name"> <button type="submit">Search</button></form>
        {{#hasModels}}<p class="muted">{{count}}</p>
        <div class="scroll"><table id="models">
        <thead><tr><th>model</th><th class="n">revisions</th><th>main</th><th class="wide">updated</th><th class="n">size</th><th class="wide">base</th></tr></thead>
        <tbody>
        {{#models}}<tr><td class="p"><a href="{{href}}">{{name}}</a></td><td class="n">{{revisions}}</td><td><code>{{head}}</code></td><td class="wide">{{updated}}</td><td class="n">{{size}}</td><td class="wide p">{{base}}</td></tr>
        {{/models}}</tbody></table></div>{{/hasModels}}
        {{^hasModels}}<p class="muted">{{empty}}</p>{{/hasModels}}
        {{>bottom}}
        """

    static let model = """
        {{>top}}<h1 id="model-name">{{name}}</h1>
        <p class="muted">main is <code>{{head}}</code> (commit <code>{{commit}}</code>), put {{created}} · <a href="{{treeHref}}">files</a></p>
        <section class="cards">
        <div class="card">size<b>{{size}}</b><span class="muted"><span id="size-bytes">{{sizeExact}}</span> bytes</span></div>
        <div class="card">stored<b>{{stored}}</b><span class="muted"><span id="stored-bytes">{{storedExact}}</span> bytes</span></div>
        <div class="card">stored ratio<b id="stored-ratio">{{ratio}}</b><span class="muted">saved {{saved}}</span></div>
        <div class="card">chunks<b><span id="shared-chunks">{{shared}}</span> shared · <span id="delta-chunks">{{delta}}</span> delta · <span id="fresh-chunks">{{fresh}}</span> fresh</b></div>
        </section>
        <h2>Base</h2>
        {{#base}}<p id="base">Stored against <a href="{{baseHref}}">{{baseName}}</a>: {{baseReason}}</p>{{/base}}
        {{#base}}<p class="muted" id="base-chain">Chain of bases: {{#chain}}{{arrow}}<a href="{{linkHref}}">{{linkName}}</a>{{/chain}}{{#chainEnd}}{{chainEnd}}{{/chainEnd}}</p>{{/base}}
        {{#baseHidden}}<p id="base">Stored against a base in a repository this token cannot read.</p>{{/baseHidden}}
        {{#noBase}}<p id="base">No base: stored on its own.</p>{{/noBase}}
        <h2>Optimizer</h2>
        {{#annotations}}<div class="box annotation">
        {{#recommendation}}<p>Recommended: <b class="recommended">{{method}}</b> at <b class="monthly">{{monthly}}</b> a month{{#saving}}, saving {{saving}} a month against 16-bit at {{baseline}}{{/saving}}.</p><p class="muted">{{reason}}</p>{{/recommendation}}
        {{^recommendation}}<p>No method is within the error bar.</p>{{/recommendation}}
        <p class="muted">optimizer {{version}}{{#stale}} <span class="stale">(stale: the current optimizer is {{current}})</span>{{/stale}} · {{createdAt}} · errors: {{errorMeasure}}</p>
        <div class="scroll"><table><thead><tr><th>method</th><th class="n">bits/weight</th><th class="n">GPU bytes</th><th class="n">error</th><th>in bar</th><th class="wide">GPU</th><th class="n">a month</th></tr></thead><tbody>
        {{#methods}}<tr><td>{{name}}</td><td class="n">{{bits}}</td><td class="n">{{gpuBytes}}</td><td class="n">{{error}}</td><td>{{inBar}}</td><td class="wide">{{gpu}}</td><td class="n">{{monthly}}</td></tr>
        {{/methods}}</tbody></table></div>
        {{#notes}}<p class="muted">note: {{.}}</p>{{/notes}}
        </div>{{/annotations}}
        {{^annotations}}<p class="muted">Not annotated yet: <code>tpstore optimize {{name}}@{{head}}</code> measures quantization methods and recommends one.</p>{{/annotations}}
        <h2>Files</h2>
        <div class="scroll"><table id="files"><thead><tr><th>path</th><th class="n">size</th><th class="n">stored</th><th class="n wide">shared</th><th class="n wide">delta</th><th class="n wide">fresh</th></tr></thead><tbody>
        {{#files}}<tr><td class="p"><a href="{{href}}">{{path}}</a></td><td class="n">{{size}}</td><td class="n">{{stored}}</td><td class="n wide">{{shared}}</td><td class="n wide">{{delta}}</td><td class="n wide">{{fresh}}</td></tr>
        {{/files}}</tbody></table></div>
        <h2>Revisions</h2>
        <div class="scroll"><table id="revisions"><thead><tr><th>revision</th><th class="wide">commit</th><th class="wide">put</th><th class="n">size</th><th class="n">stored</th><th class="n">ratio</th><th class="wide">base</th></tr></thead><tbody>
        {{#revisions}}<tr><td><a href="{{href}}">{{revision}}</a></td><td class="wide"><code>{{commitID}}</code></td><td class="wide">{{putAt}}</td><td class="n">{{revisionSize}}</td><td class="n">{{revisionStored}}</td><td class="n">{{revisionRatio}}</td><td class="wide p">{{revisionBase}}</td></tr>
        {{/revisions}}</tbody></table></div>
        {{#card}}<h2>Model card</h2>
        <pre id="model-card">{{text}}</pre>{{#truncated}}<p class="muted">(the first {{truncated}} shown)</p>{{/truncated}}{{/card}}
        {{>bottom}}
        """

    static let tree = """
        {{>top}}<h1><a href="{{modelHref}}">{{name}}</a> at <code>{{revision}}</code></h1>
        <p class="muted">commit <code>{{commit}}</code>{{#directory}} · under <code>{{directory}}</code>{{/directory}} · {{count}} files, {{size}}</p>
        <div class="scroll"><table id="files"><thead><tr><th>path</th><th class="n">size</th><th class="n wide">stored</th><th class="wide">sha256</th></tr></thead><tbody>
        {{#files}}<tr><td class="p"><a href="{{href}}">{{path}}</a></td><td class="n">{{size}}</td><td class="n wide">{{stored}}</td><td class="wide"><code>{{sha256}}</code></td></tr>
        {{/files}}</tbody></table></div>
        {{>bottom}}
        """

    static let dashboard = """
        {{>top}}<h1>Store dashboard</h1>
        {{#totals}}<section class="cards">
        <div class="card">logical bytes<b>{{logical}}</b><span class="muted"><span id="total-logical">{{logicalExact}}</span> bytes in {{files}} files of {{revisions}} revisions of {{models}} models</span></div>
        <div class="card">stored chunks<b>{{chunkBytes}}</b><span class="muted"><span id="total-stored-chunks">{{chunkBytesExact}}</span> bytes in {{chunks}} chunks ({{deltaChunks}} delta)</span></div>
        <div class="card">packs on disk<b>{{packBytes}}</b><span class="muted"><span id="total-pack-bytes">{{packBytesExact}}</span> bytes in {{packs}} packs</span></div>
        <div class="card">ratios<b>overall <span id="overall-ratio">{{overall}}</span>×</b><span class="muted">dedup <span id="dedup-ratio">{{dedup}}</span>×, compression <span id="compression-ratio">{{compression}}</span>×</span></div>
        <div class="card">saved<b>{{saved}}</b><span class="muted">logical bytes less pack bytes</span></div>
        <div class="card">worth<b><span id="storage-worth">{{storageWorth}}</span> a month</b><span class="muted">storage at {{storagePrice}}/GB-month; <span id="egress-worth">{{egressWorth}}</span> per full copy at {{egressPrice}}/GB egress</span></div>
        </section>{{/totals}}
        {{^totals}}<p class="muted">Store totals are shown to a token that may read every model; below are the models this one may read.</p>{{/totals}}
        <h2>Logical and stored bytes, one point per put</h2>
        {{#chart}}<svg viewBox="0 0 {{width}} {{height}}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">
        <title id="chart-title">Logical bytes and stored chunk bytes after each put</title>
        <line x1="{{left}}" y1="{{bottom}}" x2="{{right}}" y2="{{bottom}}" stroke="#8a93a6"/>
        <line x1="{{left}}" y1="{{top}}" x2="{{left}}" y2="{{bottom}}" stroke="#8a93a6"/>
        <text x="{{labelX}}" y="{{topLabelY}}" font-size="12" text-anchor="end" fill="#5d6577">{{maxLabel}}</text>
        <text x="{{labelX}}" y="{{bottom}}" font-size="12" text-anchor="end" fill="#5d6577">0</text>
        <text x="{{left}}" y="{{dateY}}" font-size="12" fill="#5d6577">{{firstDate}}</text>
        <text x="{{right}}" y="{{dateY}}" font-size="12" text-anchor="end" fill="#5d6577">{{lastDate}}</text>
        <polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{{logicalPoints}}"/>
        <polyline fill="none" stroke="#2e9d5b" stroke-width="2" points="{{storedPoints}}"/>
        {{#dots}}<circle cx="{{x}}" cy="{{logicalY}}" r="3" fill="#1f5fbf"><title>{{label}}: {{logical}} logical</title></circle><circle cx="{{x}}" cy="{{storedY}}" r="3" fill="#2e9d5b"><title>{{label}}: {{stored}} stored</title></circle>
        {{/dots}}<rect x="{{legendX}}" y="{{legendY}}" width="10" height="10" fill="#1f5fbf"/><text x="{{legendTextX}}" y="{{legendTextY}}" font-size="12">logical</text>
        <rect x="{{legendX2}}" y="{{legendY}}" width="10" height="10" fill="#2e9d5b"/><text x="{{legendTextX2}}" y="{{legendTextY}}" font-size="12">stored</text>
        </svg>
        <p class="muted">{{puts}} puts; last: {{lastLogical}} logical (<span id="timeline-logical">{{lastLogicalExact}}</span> bytes), {{lastStored}} stored (<span id="timeline-stored">{{lastStoredExact}}</span> bytes).</p>{{/chart}}
        {{^chart}}<p class="muted">Nothing stored yet.</p>{{/chart}}
        <h2>Savings by model</h2>
        <div class="scroll"><table id="savings"><thead><tr><th>model</th><th class="n wide">revisions</th><th class="n">logical</th><th class="n">stored</th><th class="n">saved</th><th class="n">storage a month</th><th class="n wide">egress per copy</th></tr></thead><tbody>
        {{#savings}}<tr><td class="p"><a href="{{href}}">{{name}}</a></td><td class="n wide">{{revisions}}</td><td class="n">{{logical}}</td><td class="n">{{stored}}</td><td class="n">{{saved}} ({{savedPercent}})</td><td class="n">{{storageWorth}}</td><td class="n wide">{{egressWorth}}</td></tr>
        {{/savings}}</tbody></table></div>
        <p class="muted">Prices: {{storagePrice}} per GB-month of storage, {{egressPrice}} per GB of egress (GB = 10⁹ bytes; set with <code>--price-storage-gb-month</code> and <code>--price-egress-gb</code>). A model's stored bytes are <code>tpstore show</code>'s, summed over its revisions; egress is what one full copy of the saved bytes would cost to send.</p>
        {{>bottom}}
        """

    static let login = """
        {{>top}}<h1>Sign in</h1>
        <form method="post" action="/~/login" class="box"><label>Token <input type="password" name="token" autocomplete="current-password" required></label> <button type="submit">Sign in</button></form>
        <p class="muted">The token is kept in the cookie <code>tpstore_token</code> (HttpOnly, SameSite=Strict) and counts on reads only (GET and HEAD); <em>sign out</em> removes it. HTTP basic authentication with the token as the password works too.</p>
        {{>bottom}}
        """

    static let error = """
        {{>top}}<h1>{{status}}</h1>
        <p id="error">{{message}}</p>
        {{>bottom}}
        """

    /// Whether the template of this name parsed (tests: a template that does not is a bug here).
    static func parsed(_ name: String) -> Bool { library.getTemplate(named: name) != nil }

    /// Every template by name, for `MustacheLibrary` (partials `top` and `bottom` included).
    static let all: [String: String] = [
        "top": top, "bottom": bottom, "models": models, "model": model, "tree": tree, "dashboard": dashboard, "login": login, "error": error,
    ]

    /// The parsed library. A template that does not parse is a bug of this file, caught by the
    /// web tests; the server then answers 500 for that page instead of stopping.
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in all {
            if let template = try? MustacheTemplate(string: text) { library.register(template, named: name) }
        }
        return library
    }()
}
