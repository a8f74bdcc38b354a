//! Temporary lab (not committed): the archive writer's throughput over a real backup's tar.
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let data = std::fs::read(&path).unwrap();
    let mut items = Vec::new();
    let mut pos = 0;
    while pos + 512 <= data.len() {
        let h = &data[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..135]).trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap();
        if name.starts_with("resources/") && !name.contains("-preferredversion") {
            items.push((name, pos + 512..pos + 512 + size));
        }
        pos += 512 + size.div_ceil(512) * 512;
    }
    let t = Instant::now();
    let mut w = tidemark::archive::ArchiveWriter::new(std::io::sink(), 0).unwrap();
    for (name, r) in &items {
        let parts: Vec<&str> = name.split('/').collect();
        let key = tidemark::archive::ItemKey {
            group_resource: parts[1].into(),
            version: "v1".into(),
            namespace: if parts[2] == "namespaces" {
                Some(parts[3].into())
            } else {
                None
            },
            name: parts.last().unwrap().trim_end_matches(".json").into(),
        };
        w.add_item(&key, &data[r.clone()]).unwrap();
    }
    w.finish().unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} items, {:.3} s, {:.0} MB/s of tar",
        items.len(),
        s,
        data.len() as f64 / s / 1e6
    );
}
