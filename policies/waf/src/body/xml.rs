//! XML bodies: well-formedness check and the text / attribute values that
//! `XML:/*` and `XML://@*` select.

/// Parsed XML content for the `XML` collection.
#[derive(Debug, Default, Clone)]
pub struct XmlDoc {
    /// Character data of all elements, concatenated as libxml2's string value of `/*`.
    pub text: Vec<u8>,
    pub attrs: Vec<Vec<u8>>,
}

pub fn parse(body: &[u8]) -> Result<XmlDoc, String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(body);
    r.config_mut().check_end_names = true;
    let mut doc = XmlDoc::default();
    let mut depth: usize = 0;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                seen_root = true;
                push_attrs(&e, &mut doc);
            }
            Ok(Event::Empty(e)) => {
                seen_root = true;
                push_attrs(&e, &mut doc);
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Text(t)) => {
                if depth > 0 {
                    let raw = t.into_inner();
                    doc.text
                        .extend_from_slice(&crate::transform_decode::html_entity_decode(&raw));
                } else if t.iter().any(|c| !c.is_ascii_whitespace()) {
                    return Err("XML parsing error: text outside the root element".into());
                }
            }
            Ok(Event::CData(c)) => doc.text.extend_from_slice(&c.into_inner()),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("XML parsing error: {e}")),
        }
        buf.clear();
    }
    if !seen_root || depth != 0 {
        return Err("XML parsing error: no complete root element".into());
    }
    Ok(doc)
}

fn push_attrs(e: &quick_xml::events::BytesStart<'_>, doc: &mut XmlDoc) {
    for a in e.attributes().flatten() {
        doc.attrs
            .push(crate::transform_decode::html_entity_decode(&a.value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_errors() {
        let d = parse(b"<?xml version=\"1.0\"?><a x=\"1\"><b>hi</b> there</a>").unwrap();
        assert_eq!(d.text, b"hi there");
        assert_eq!(d.attrs, vec![b"1".to_vec()]);
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"not xml").is_err());
    }
}
