//! Hand-computed fixtures for the ImageNet-AB reader, LUAB targets and click accuracy.

use labelscope_byproducts::ReadOptions;
use std::collections::BTreeMap;

use labelscope_byproducts::analytics::{click_accuracy, gaussian_centre_accuracy};
use labelscope_byproducts::imagenet::{parse_record, read_archive, write_archive};
use labelscope_byproducts::targets::{imagenet_target, map_through_crop, random_baseline, Crop, PointMode};
use labelscope_byproducts::{Error, Point};

const SKIP: ReadOptions = ReadOptions { skip_bad: true, threads: 0, progress: None };

const REC: &str = r#"<annotation>
  <filename>n01440764_10026.JPEG</filename>
  <size><width>200</width><height>100</height></size>
  <metadata><selected>False</selected><workerId>W1</workerId></metadata>
  <metadata>
    <selected>True</selected><workerId>W2</workerId>
    <selectedRecord><x>0.2</x><y>0.4</y></selectedRecord>
    <estimateTime>300</estimateTime>
  </metadata>
  <metadata>
    <selected>True</selected><workerId>W3</workerId>
    <selectedRecord><x>0.6</x><y>0.8</y></selectedRecord>
    <estimateTime>250</estimateTime>
    <mouseTracking><time>1000</time><x>0.1</x><y>0.1</y></mouseTracking>
    <mouseTracking><time>1100</time><x>0.3</x><y>0.5</y></mouseTracking>
    <mouseTracking><time>1200</time><x>0.5</x><y>0.7</y></mouseTracking>
    <mouseTracking><time>1300</time><x>0.9</x><y>0.9</y></mouseTracking>
  </metadata>
</annotation>"#;

fn close(a: Point, x: f64, y: f64) {
    assert!((a.x - x).abs() < 1e-12 && (a.y - y).abs() < 1e-12, "{a:?} != ({x}, {y})");
}

#[test]
fn record_fields_and_targets_are_hand_computed() {
    let r = parse_record(REC, "train/n01440764/n01440764_10026.xml").unwrap();
    assert_eq!(r.image, "n01440764_10026");
    assert_eq!(r.wnid.as_deref(), Some("n01440764"));
    assert_eq!(r.size, Some((200, 100)));
    assert_eq!(r.showings.len(), 3);
    assert_eq!(r.showings[0].worker.as_deref(), Some("W1"));
    assert!(!r.showings[0].selected && r.showings[0].click.is_none());
    assert_eq!(r.showings[2].trace.len(), 4);
    // Final click: the last selected showing.
    close(imagenet_target(&r, PointMode::FinalClick).unwrap(), 0.6, 0.8);
    // Mean of the two selected clicks.
    close(imagenet_target(&r, PointMode::MeanOfClicks).unwrap(), 0.4, 0.6);
    // Click at 1000 + 250 ms: trace points at 1000, 1100, 1200 qualify; the last two average to (0.4, 0.6).
    close(imagenet_target(&r, PointMode::LastTrace(2)).unwrap(), 0.4, 0.6);
    close(imagenet_target(&r, PointMode::LastTrace(10)).unwrap(), 0.3, 13.0 / 30.0);
    // No selected showing: no target.
    let none =
        parse_record("<annotation><metadata><selected>False</selected></metadata></annotation>", "x/n01440764_1.xml")
            .unwrap();
    assert_eq!(none.image, "n01440764_1");
    assert!(imagenet_target(&none, PointMode::FinalClick).is_none());
    assert!(imagenet_target(&none, PointMode::MeanOfClicks).is_none());
}

#[test]
fn bad_records_name_the_position() {
    let e =
        parse_record("<annotation><metadata><selected>maybe</selected></metadata></annotation>", "a.xml").unwrap_err();
    assert!(e.contains("a.xml: byte 12") && e.contains("expected True or False"), "{e}");
    let e = parse_record("<annotation><metadata><selected>True</selected><selectedRecord><x>nan</x><y>1</y></selectedRecord></metadata></annotation>", "b.xml").unwrap_err();
    assert!(e.contains("<x>") && e.contains("finite number"), "{e}");
    let e = parse_record("<annotation><metadata>", "c.xml").unwrap_err();
    assert!(e.contains("c.xml: not well-formed XML"), "{e}");
}

#[test]
fn archive_streams_members_and_skips_bad_ones_on_request() {
    let bad = "<annotation><metadata><selected>yes</selected></metadata></annotation>";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imagenet_ab.tar.gz");
    write_archive(
        &path,
        [
            ("ab/n01440764/n01440764_10026.xml", REC),
            ("ab/n01440764/n01440764_2.xml", bad),
            ("ab/readme.txt", "not a record"),
            ("ab/n01440764/n01440764_3.xml", "<annotation><filename>n01440764_3</filename></annotation>"),
        ],
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let err = read_archive(&path, &ReadOptions::default(), |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("imagenet_ab.tar.gz") && msg.contains("member ab/n01440764/n01440764_2.xml at byte"), "{msg}");

    let mut keys = Vec::new();
    let s = read_archive(&path, &SKIP, |r| keys.push(r.image)).unwrap();
    assert_eq!(keys, ["n01440764_10026", "n01440764_3"]);
    assert_eq!((s.records, s.skipped), (2, 1));
    assert!(s.skip_reasons[0].contains("n01440764_2.xml"));

    // Truncated archive: an error even with skip_bad, naming the last good member.
    let cut = dir.path().join("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_archive(&cut, &SKIP, |_| {}).unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    assert!(e.to_string().contains("cut.tar.gz"), "{e}");
}

#[test]
fn crop_mapping_is_hand_computed() {
    // 200 x 100 image, point (0.5, 0.5) = pixel (100, 50); crop rows 20..80, columns 60..160.
    let c = Crop { i: 20.0, j: 60.0, h: 60.0, w: 100.0, flip: false };
    close(map_through_crop(Point { x: 0.5, y: 0.5 }, 200.0, 100.0, c).unwrap(), 0.4, 0.5);
    close(map_through_crop(Point { x: 0.5, y: 0.5 }, 200.0, 100.0, Crop { flip: true, ..c }).unwrap(), 0.6, 0.5);
    // Pixel (20, 50) is left of the crop.
    assert!(map_through_crop(Point { x: 0.1, y: 0.5 }, 200.0, 100.0, c).is_none());
    // Edge counts as inside.
    close(map_through_crop(Point { x: 0.8, y: 0.8 }, 200.0, 100.0, c).unwrap(), 1.0, 1.0);
}

#[test]
fn random_baseline_keeps_coverage_and_is_seeded() {
    let t = vec![Some(Point { x: 0.1, y: 0.1 }), None, Some(Point { x: 0.9, y: 0.9 })];
    let a = random_baseline(&t, 7);
    assert!(a[0].is_some() && a[1].is_none() && a[2].is_some());
    assert_eq!(a, random_baseline(&t, 7));
    assert_ne!(a, random_baseline(&t, 8));
    // Uniform in the unit square: the mean of many draws is near 0.5 (std error ~0.003).
    let many = random_baseline(&vec![Some(Point { x: 0.0, y: 0.0 }); 10000], 1);
    let mx = many.iter().map(|p| p.unwrap().x).sum::<f64>() / 1e4;
    assert!((mx - 0.5).abs() < 0.015, "{mx}");
}

#[test]
fn click_accuracy_and_baselines_are_hand_computed() {
    let mut boxes = BTreeMap::new();
    boxes.insert("a".to_string(), vec![[0.4, 0.4, 0.6, 0.6]]); // contains the centre
    boxes.insert("b".to_string(), vec![[0.0, 0.0, 0.2, 0.5], [0.7, 0.7, 1.0, 1.0]]); // does not
    boxes.insert("c".to_string(), vec![[0.0, 0.0, 1.0, 0.25]]); // does not
    let mut clicks = BTreeMap::new();
    clicks.insert("a".to_string(), Point { x: 0.5, y: 0.45 }); // hit
    clicks.insert("b".to_string(), Point { x: 0.8, y: 0.9 }); // hit (second box)
    clicks.insert("c".to_string(), Point { x: 0.5, y: 0.5 }); // miss
    clicks.insert("d".to_string(), Point { x: 0.5, y: 0.5 }); // no boxes: left out
    let a = click_accuracy(&clicks, &boxes).unwrap();
    assert_eq!(a.images, 3);
    assert!((a.click - 2.0 / 3.0).abs() < 1e-12);
    assert!((a.centre - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(a.centre_fails, 2);
    assert!((a.click_where_centre_fails - 0.5).abs() < 1e-12);

    // sigma = 0 is the centre click.
    assert!((gaussian_centre_accuracy(&boxes, 0.0, 10, 3).unwrap() - 1.0 / 3.0).abs() < 1e-12);
    // sigma = inf is uniform: expected hit rate = mean covered area = (0.04 + (0.1 + 0.09) + 0.25) / 3.
    let u = gaussian_centre_accuracy(&boxes, f64::INFINITY, 20000, 3).unwrap();
    let want = (0.04 + 0.19 + 0.25) / 3.0;
    assert!((u - want).abs() < 0.01, "{u} vs {want}");
    assert!(click_accuracy(&BTreeMap::new(), &boxes).is_err());
    assert!(gaussian_centre_accuracy(&boxes, -1.0, 10, 3).is_err());
}
