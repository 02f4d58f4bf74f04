//! A small builder for self-contained HTML pages: the charts are embedded as SVG data URIs,
//! so `report.html` opens from disk with no server and no other files, and links to the
//! PNG/SVG files next to it for download.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;

use super::ReportError;
use super::charts::ChartFile;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:2em auto;max-width:1150px;color:#222;padding:0 1em}\
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}\
td.l{text-align:left}\
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #ddd}\
figcaption{font-size:14px;color:#444}\
.ok{color:#186a1e;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
code,pre{background:#f6f6f6;padding:1px 4px}pre{padding:8px;overflow-x:auto}\
.note{font-size:14px;color:#555}";

/// An HTML page under construction.
pub struct Page {
    body: String,
    title: String,
}

impl Page {
    pub fn new(title: &str) -> Page {
        let mut p = Page {
            body: String::new(),
            title: title.to_string(),
        };
        let _ = writeln!(p.body, "<h1>{}</h1>", esc(title));
        p
    }

    pub fn h2(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<h2>{}</h2>", esc(text));
        self
    }

    /// A paragraph of plain text.
    pub fn p(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p>{}</p>", esc(text));
        self
    }

    /// A paragraph with a CSS class (`ok`, `bad`, `note`).
    pub fn p_class(&mut self, class: &str, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p class=\"{class}\">{}</p>", esc(text));
        self
    }

    /// A table of text cells; the first column is left-aligned.
    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) -> &mut Self {
        self.table_left(headers, rows, &[])
    }

    /// A table of text cells with the first column and the columns in `left` left-aligned
    /// (words rather than numbers).
    pub fn table_left(
        &mut self,
        headers: &[&str],
        rows: &[Vec<String>],
        left: &[usize],
    ) -> &mut Self {
        let b = &mut self.body;
        b.push_str("<table><tr>");
        for h in headers {
            let _ = write!(b, "<th>{}</th>", esc(h));
        }
        b.push_str("</tr>\n");
        for r in rows {
            b.push_str("<tr>");
            for (i, c) in r.iter().enumerate() {
                let class = if i > 0 && left.contains(&i) {
                    " class=\"l\""
                } else {
                    ""
                };
                let _ = write!(b, "<td{class}>{}</td>", esc(c));
            }
            b.push_str("</tr>\n");
        }
        b.push_str("</table>\n");
        self
    }

    /// A list of links, each `(href, text)`.
    pub fn links(&mut self, items: &[(String, String)]) -> &mut Self {
        let b = &mut self.body;
        b.push_str("<ul>");
        for (href, text) in items {
            let _ = write!(b, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(text));
        }
        b.push_str("</ul>\n");
        self
    }

    /// Two-column key/value table.
    pub fn facts(&mut self, rows: &[(&str, String)]) -> &mut Self {
        let b = &mut self.body;
        b.push_str("<table>");
        for (k, v) in rows {
            let _ = write!(
                b,
                "<tr><th>{}</th><td class=\"l\">{}</td></tr>",
                esc(k),
                esc(v)
            );
        }
        b.push_str("</table>\n");
        self
    }

    /// A chart, embedded (SVG data URI) and linked to its files relative to `base`.
    pub fn chart(&mut self, c: &ChartFile, base: &Path) -> Result<&mut Self, ReportError> {
        let svg = std::fs::read(&c.svg).map_err(ReportError::io(&c.svg))?;
        let data = base64::engine::general_purpose::STANDARD.encode(svg);
        let rel = |p: &Path| {
            p.strip_prefix(base)
                .unwrap_or(p)
                .to_string_lossy()
                .replace('\\', "/")
        };
        let _ = writeln!(
            self.body,
            "<figure id=\"{name}\"><img alt=\"{alt}\" src=\"data:image/svg+xml;base64,{data}\">\
             <figcaption>{cap} — <a href=\"{png}\">{png}</a> · <a href=\"{svgp}\">{svgp}</a></figcaption></figure>",
            name = esc(&c.name),
            alt = esc(&c.caption),
            cap = esc(&c.caption),
            png = esc(&rel(&c.png)),
            svgp = esc(&rel(&c.svg)),
        );
        Ok(self)
    }

    /// Write the page to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head>\n<body>\n{}\
             <p class=\"note\">Generated by raftbench {} ({}).</p>\n</body></html>\n",
            esc(&self.title),
            self.body,
            env!("CARGO_PKG_VERSION"),
            option_env!("RAFTBENCH_GIT_REV").unwrap_or("unknown"),
        );
        std::fs::write(path, html).map_err(ReportError::io(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_words_left_and_links_are_escaped() {
        let mut p = Page::new("t");
        p.table_left(
            &["metric", "a", "winner"],
            &[vec!["x".into(), "1".into(), "a<b".into()]],
            &[2],
        );
        p.links(&[("runs/a&b/report.html".into(), "a & b".into())]);
        assert!(
            p.body
                .contains("<tr><td>x</td><td>1</td><td class=\"l\">a&lt;b</td></tr>"),
            "{}",
            p.body
        );
        assert!(
            p.body
                .contains("<ul><li><a href=\"runs/a&amp;b/report.html\">a &amp; b</a></li></ul>")
        );
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
