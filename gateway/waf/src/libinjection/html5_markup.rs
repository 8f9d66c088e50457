//! The HTML5 tokenizer's markup states: `<!DOCTYPE`, `<![CDATA[`, `<!--` comments (ending at
//! `-->` or `-!>`, NULs ignored after the first `-`), bogus comments, and IE's `<%…%>`.

use super::html5::{Flow, Html5, Kind, State};

impl Html5<'_> {
    pub(super) fn markup_declaration_open(&mut self) -> Flow {
        let rest = self.s.get(self.pos..).unwrap_or(&[]);
        if rest
            .get(..7)
            .is_some_and(|r| r.eq_ignore_ascii_case(b"DOCTYPE"))
        {
            return Flow::Go(State::Doctype);
        }
        if rest.starts_with(b"[CDATA[") {
            self.pos += 7;
            return Flow::Go(State::Cdata);
        }
        if rest.starts_with(b"--") {
            self.pos += 2;
            return Flow::Go(State::Comment);
        }
        Flow::Go(State::BogusComment)
    }

    pub(super) fn bogus_comment(&mut self) -> Flow {
        let pos = self.pos;
        match self.find(pos, b'>') {
            None => self.emit_rest(Kind::TagComment),
            Some(gt) => {
                self.pos = gt + 1;
                self.emit(Kind::TagComment, pos, gt - pos, State::Data)
            }
        }
    }

    /// `<%…%>` (IE up to 9, old Safari).
    pub(super) fn bogus_comment2(&mut self) -> Flow {
        let start = self.pos;
        let mut from = start;
        while let Some(pct) = self.find(from, b'%') {
            if pct + 1 >= self.s.len() {
                break;
            }
            if self.at(pct + 1) == b'>' {
                self.pos = pct + 2;
                return self.emit(Kind::TagComment, start, pct - start, State::Data);
            }
            from = pct + 1;
        }
        self.emit_rest(Kind::TagComment)
    }

    /// Inside `<!--`: up to `-->` or `-!>` (NULs after the first `-` are skipped).
    pub(super) fn comment(&mut self) -> Flow {
        let start = self.pos;
        let n = self.s.len();
        let mut from = start;
        while let Some(dash) = self.find(from, b'-') {
            if dash + 3 > n {
                break;
            }
            let mut off = 1;
            while dash + off < n && self.at(dash + off) == 0 {
                off += 1;
            }
            if dash + off == n {
                break;
            }
            if !matches!(self.at(dash + off), b'-' | b'!') {
                from = dash + 1;
                continue;
            }
            off += 1;
            if dash + off == n {
                break;
            }
            if self.at(dash + off) != b'>' {
                from = dash + 1;
                continue;
            }
            self.pos = dash + off + 1;
            return self.emit(Kind::TagComment, start, dash - start, State::Data);
        }
        self.emit_rest(Kind::TagComment)
    }

    /// `<![CDATA[…]]>`: its content is text.
    pub(super) fn cdata(&mut self) -> Flow {
        let start = self.pos;
        let n = self.s.len();
        let mut from = start;
        while let Some(rb) = self.find(from, b']') {
            if rb + 3 > n {
                break;
            }
            if self.at(rb + 1) == b']' && self.at(rb + 2) == b'>' {
                self.pos = rb + 3;
                return self.emit(Kind::DataText, start, rb - start, State::Data);
            }
            from = rb + 1;
        }
        self.emit_rest(Kind::DataText)
    }

    pub(super) fn doctype(&mut self) -> Flow {
        let pos = self.pos;
        match self.find(pos, b'>') {
            None => self.emit_rest(Kind::Doctype),
            Some(gt) => {
                self.pos = gt + 1;
                self.emit(Kind::Doctype, pos, gt - pos, State::Data)
            }
        }
    }
}
