//! Turns one build log line that may contain ANSI escape sequences into safe HTML,
//! keeping colours and text styles as CSS classes and dropping everything else.

const ESC: char = '\x1b';

/// Renders one log line as HTML: text escaped (& < > " '), SGR colour and style sequences turned into
/// `<span class="…">` elements, every other escape sequence (cursor moves, erase line, OSC titles/links, stray ESC) dropped.
pub(crate) fn to_html(line: &str) -> String {
    let chars: Vec<char> = after_last_carriage_return(line).chars().collect();
    let mut writer = Writer::default();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        if c != ESC {
            writer.text(c);
            continue;
        }
        match chars.get(i) {
            // A trailing lone ESC.
            None => {}
            Some('[') => i = skip_csi(&chars, i + 1, &mut writer.style),
            // OSC, DCS, SOS, PM and APC strings all run until a string terminator.
            Some(']' | 'P' | 'X' | '^' | '_') => i = skip_string(&chars, i + 1),
            // Sequences with intermediate bytes, such as `ESC ( B` (select character set).
            Some(' '..='/') => {
                i += 1;
                while matches!(chars.get(i), Some(' '..='/')) {
                    i += 1;
                }
                if matches!(chars.get(i), Some('0'..='~')) {
                    i += 1;
                }
            }
            // Any other ESC drops itself and the one character after it.
            Some(_) => i += 1,
        }
    }
    writer.finish()
}

/// Keeps only what a terminal would show after carriage returns overwrite the line.
/// Trailing `\r` and `\n` are ignored, so `"done\r"` stays `"done"`.
fn after_last_carriage_return(line: &str) -> &str {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    match trimmed.rfind('\r') {
        Some(pos) => trimmed.get(pos + 1..).unwrap_or(""),
        None => trimmed,
    }
}

/// Skips a CSI sequence starting after `ESC [` and returns the index after it.
/// An SGR sequence (final byte `m`) updates `style`; other sequences are dropped.
/// A malformed sequence ends at the first byte that does not belong to it.
fn skip_csi(chars: &[char], start: usize, style: &mut Style) -> usize {
    let mut end = start;
    while let Some(&c) = chars.get(end) {
        match c {
            ' '..='?' => end += 1,
            '@'..='~' => {
                if c == 'm' {
                    let params: String = chars.get(start..end).unwrap_or(&[]).iter().collect();
                    style.apply_sgr(&params);
                }
                return end + 1;
            }
            _ => return end,
        }
    }
    end
}

/// Skips a control string (such as OSC) up to BEL or `ESC \` and returns the index after it.
/// An ESC not followed by `\` ends the string and is read again as a new sequence.
fn skip_string(chars: &[char], start: usize) -> usize {
    let mut end = start;
    while let Some(&c) = chars.get(end) {
        match c {
            '\x07' | '\u{9c}' => return end + 1,
            ESC if chars.get(end + 1) == Some(&'\\') => return end + 2,
            ESC => return end,
            _ => end += 1,
        }
    }
    end
}

/// Reads a decimal parameter; empty means 0 and overlarge values saturate.
fn number(text: &str) -> u32 {
    text.chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0, |acc: u32, digit| {
            acc.saturating_mul(10).saturating_add(digit)
        })
}

/// Text style set by SGR sequences.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    /// CSS classes in the order b dim i u fgN bgN, separated by spaces.
    fn classes(&self) -> String {
        let mut classes = Vec::new();
        for (on, name) in [
            (self.bold, "b"),
            (self.dim, "dim"),
            (self.italic, "i"),
            (self.underline, "u"),
        ] {
            if on {
                classes.push(name.to_string());
            }
        }
        if let Some(n) = self.fg {
            classes.push(format!("fg{n}"));
        }
        if let Some(n) = self.bg {
            classes.push(format!("bg{n}"));
        }
        classes.join(" ")
    }

    /// Applies the parameters of one SGR sequence, in order.
    /// Private sequences (such as `ESC [ ? … m`) are ignored.
    fn apply_sgr(&mut self, params: &str) {
        if !params
            .chars()
            .all(|c| c.is_ascii_digit() || c == ';' || c == ':')
        {
            return;
        }
        let groups: Vec<&str> = params.split(';').collect();
        let mut k = 0;
        while let Some(group) = groups.get(k) {
            k += 1;
            if group.contains(':') {
                let parts: Vec<u32> = group.split(':').map(number).collect();
                self.apply_colon_group(&parts);
                continue;
            }
            let code = number(group);
            if matches!(code, 38 | 48 | 58) {
                match groups.get(k).map(|g| number(g)) {
                    Some(5) => {
                        self.set_indexed(code, groups.get(k + 1).map(|g| number(g)));
                        k += 2;
                    }
                    Some(2) => k += 4,
                    Some(_) => k += 1,
                    None => {}
                }
            } else {
                self.apply_code(code);
            }
        }
    }

    /// Applies a colon-separated parameter such as `38:5:9` or `4:0`.
    fn apply_colon_group(&mut self, parts: &[u32]) {
        match parts {
            [code @ (38 | 48 | 58), 5, rest @ ..] => self.set_indexed(*code, rest.first().copied()),
            [38 | 48 | 58, ..] => {}
            [4, 0, ..] => self.underline = false,
            [4, ..] => self.underline = true,
            [code, ..] => self.apply_code(*code),
            [] => {}
        }
    }

    /// Sets a 256-colour foreground (38) or background (48); only the 16 basic colours are kept.
    fn set_indexed(&mut self, code: u32, index: Option<u32>) {
        let Some(index) = index else { return };
        let colour = u8::try_from(index).ok().filter(|n| *n <= 15);
        match code {
            38 => self.fg = colour,
            48 => self.bg = colour,
            _ => {}
        }
    }

    /// Applies one plain SGR code; unknown codes are ignored.
    fn apply_code(&mut self, code: u32) {
        match code {
            0 => *self = Self::default(),
            1 => self.bold = true,
            2 => self.dim = true,
            3 => self.italic = true,
            4 => self.underline = true,
            22 => {
                self.bold = false;
                self.dim = false;
            }
            23 => self.italic = false,
            24 => self.underline = false,
            30..=37 => self.fg = Some((code - 30) as u8),
            39 => self.fg = None,
            40..=47 => self.bg = Some((code - 40) as u8),
            49 => self.bg = None,
            90..=97 => self.fg = Some((code - 90 + 8) as u8),
            100..=107 => self.bg = Some((code - 100 + 8) as u8),
            _ => {}
        }
    }
}

/// Builds the HTML, opening and closing spans only where styled text is written.
#[derive(Default)]
struct Writer {
    out: String,
    /// Style set by the sequences read so far.
    style: Style,
    /// Style of the span now open; the default style means no span is open.
    open: Style,
}

impl Writer {
    /// Writes one character of text, escaped; control characters other than tab are dropped.
    fn text(&mut self, c: char) {
        if c.is_control() && c != '\t' {
            return;
        }
        if self.style != self.open {
            self.close();
            if self.style != Style::default() {
                self.out.push_str("<span class=\"");
                self.out.push_str(&self.style.classes());
                self.out.push_str("\">");
            }
            self.open = self.style;
        }
        match c {
            '&' => self.out.push_str("&amp;"),
            '<' => self.out.push_str("&lt;"),
            '>' => self.out.push_str("&gt;"),
            '"' => self.out.push_str("&quot;"),
            '\'' => self.out.push_str("&#39;"),
            _ => self.out.push(c),
        }
    }

    /// Closes the open span, if any.
    fn close(&mut self) {
        if self.open != Style::default() {
            self.out.push_str("</span>");
            self.open = Style::default();
        }
    }

    /// Closes the last span and returns the HTML.
    fn finish(mut self) -> String {
        self.close();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn plain_text() {
        assert_eq!(
            to_html("Step 1/5: FROM rust:1.85"),
            "Step 1/5: FROM rust:1.85"
        );
        assert_eq!(to_html(""), "");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            to_html(r#"a & b < c > d "e" 'f'"#),
            "a &amp; b &lt; c &gt; d &quot;e&quot; &#39;f&#39;"
        );
    }

    #[test]
    fn red_then_reset() {
        assert_eq!(
            to_html("\x1b[31merror\x1b[0m done"),
            "<span class=\"fg1\">error</span> done"
        );
        assert_eq!(
            to_html("\x1b[31merror\x1b[m done"),
            "<span class=\"fg1\">error</span> done"
        );
    }

    #[test]
    fn bold_and_green_combined() {
        assert_eq!(
            to_html("\x1b[1;32mok\x1b[0m"),
            "<span class=\"b fg2\">ok</span>"
        );
        assert_eq!(
            to_html("\x1b[1m\x1b[32mok"),
            "<span class=\"b fg2\">ok</span>"
        );
        assert_eq!(
            to_html("\x1b[1mA\x1b[32mB"),
            "<span class=\"b\">A</span><span class=\"b fg2\">B</span>"
        );
    }

    #[test]
    fn class_order_and_clearing() {
        assert_eq!(
            to_html("\x1b[4;3;2;1;33;44mx\x1b[22;23mY\x1b[24mz"),
            "<span class=\"b dim i u fg3 bg4\">x</span><span class=\"u fg3 bg4\">Y</span><span class=\"fg3 bg4\">z</span>"
        );
    }

    #[test]
    fn bright_colours() {
        assert_eq!(
            to_html("\x1b[91mA\x1b[102mB\x1b[39;49mC"),
            "<span class=\"fg9\">A</span><span class=\"fg9 bg10\">B</span>C"
        );
        assert_eq!(
            to_html("\x1b[97;107mW"),
            "<span class=\"fg15 bg15\">W</span>"
        );
    }

    #[test]
    fn colour_256_low() {
        assert_eq!(to_html("\x1b[38;5;4mx"), "<span class=\"fg4\">x</span>");
        assert_eq!(to_html("\x1b[48;5;15mx"), "<span class=\"bg15\">x</span>");
        assert_eq!(to_html("\x1b[38:5:9mx"), "<span class=\"fg9\">x</span>");
    }

    #[test]
    fn colour_256_high() {
        assert_eq!(
            to_html("\x1b[31m\x1b[38;5;196mx\x1b[48;5;12my"),
            "x<span class=\"bg12\">y</span>"
        );
        assert_eq!(to_html("\x1b[38;5;200;1mz"), "<span class=\"b\">z</span>");
    }

    #[test]
    fn truecolour_ignored() {
        assert_eq!(to_html("\x1b[38;2;255;0;0mplain"), "plain");
        assert_eq!(
            to_html("\x1b[1m\x1b[38;2;0;0;0mx"),
            "<span class=\"b\">x</span>"
        );
        assert_eq!(to_html("\x1b[48;2;1;2;3;4mx"), "<span class=\"u\">x</span>");
        assert_eq!(
            to_html("\x1b[1;38:2::255:0:0mx"),
            "<span class=\"b\">x</span>"
        );
    }

    #[test]
    fn cursor_and_erase_removed() {
        assert_eq!(
            to_html("\x1b[2K\x1b[1Gstep 1\x1b[?25l\x1b[0K\x1b[3A"),
            "step 1"
        );
        assert_eq!(to_html("\x1b[?25hdone"), "done");
        assert_eq!(to_html("\x1b(B\x1b[mtext"), "text");
    }

    #[test]
    fn osc_hyperlink_removed_keeping_text() {
        assert_eq!(
            to_html("see \x1b]8;;https://example.com/?a=1\x1b\\docs\x1b]8;;\x1b\\ now"),
            "see docs now"
        );
        assert_eq!(to_html("\x1b]0;window title\x07text"), "text");
    }

    #[test]
    fn carriage_return_progress() {
        assert_eq!(to_html("10%\r50%\r100%"), "100%");
        assert_eq!(to_html("done\r"), "done");
        assert_eq!(to_html("done\r\n"), "done");
        assert_eq!(to_html("\x1b[32m10%\r100%"), "100%");
    }

    #[test]
    fn unterminated_and_malformed() {
        assert_eq!(to_html("abc\x1b[31"), "abc");
        assert_eq!(to_html("abc\x1b]8;;https://x"), "abc");
        assert_eq!(to_html("abc\x1b"), "abc");
        assert_eq!(to_html("a\x1bxb"), "ab");
        assert_eq!(to_html("\x1b[38;5"), "");
        assert_eq!(to_html("\x1b[38mx"), "x");
        assert_eq!(to_html("\x1b[3\x07x"), "x");
        assert_eq!(to_html("\x1b[99999999999999999999999mX"), "X");
        assert_eq!(to_html("\x1b[38;5;99999999999999999999999mX"), "X");
    }

    #[test]
    fn control_characters_dropped_but_tab_kept() {
        assert_eq!(to_html("a\tb\x08c\x00d\x7f"), "a\tbcd");
    }

    #[test]
    fn no_empty_spans() {
        assert_eq!(to_html("\x1b[31m\x1b[0mx"), "x");
        assert_eq!(to_html("x\x1b[31m"), "x");
        assert_eq!(
            to_html("\x1b[31ma\x1b[0m\x1b[31mb"),
            "<span class=\"fg1\">ab</span>"
        );
    }

    #[test]
    fn script_in_coloured_text_stays_escaped() {
        assert_eq!(
            to_html("\x1b[31m<script>alert('x')</script>\x1b[0m"),
            "<span class=\"fg1\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</span>"
        );
    }

    #[test]
    fn never_panics_on_short_combinations() {
        let alphabet = [
            "\x1b", "[", "]", ";", ":", "5", "38", "m", "\x07", "\\", "\r", "é",
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let html = to_html(&format!("{a}{b}{c}{d}"));
                        assert!(!html.contains('\x1b'));
                        assert_eq!(
                            html.matches("<span").count(),
                            html.matches("</span>").count()
                        );
                    }
                }
            }
        }
    }
}
