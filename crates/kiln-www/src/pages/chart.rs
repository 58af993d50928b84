//! The layout of the waterfall: builds as boxes in their builder's column, newest at the top.
//!
//! The vertical axis is the order of events, not clock time: each build's start and end is a row,
//! so a quiet night takes no room and a busy minute is not crushed. A box spans the rows from its
//! end to its start; builds of one builder that overlap (several workers) go side by side in
//! lanes. The result is a table: each box one cell with a row span, runs of empty cells merged.

use std::collections::BTreeMap;

/// One build to place: its column, an id to find it again, and when it ran (a running build
/// ends now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub column: usize,
    pub id: i64,
    pub start: i64,
    pub end: i64,
}

/// A cell of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// The top of a build's box, spanning `rows` rows.
    Build { id: i64, rows: usize },
    /// `rows` empty rows of one lane.
    Empty { rows: usize },
}

/// The table: the lanes of each column, the time of each row, and each row's cells from left to
/// right (the cells covered by a box above are left out, as HTML wants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub lanes: Vec<usize>,
    pub times: Vec<i64>,
    pub rows: Vec<Vec<Cell>>,
}

/// Lays out `spans` in `columns` columns.
pub fn layout(columns: usize, spans: &[Span]) -> Chart {
    // Each build's start and end, newest first; at the same time a start is above an end, since
    // what starts then runs after what ends then.
    let mut points: Vec<(i64, u8, usize)> = Vec::with_capacity(spans.len() * 2);
    for (i, s) in spans.iter().enumerate() {
        points.push((s.end.max(s.start), 1, i));
        points.push((s.start, 0, i));
    }
    points.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut top = vec![usize::MAX; spans.len()];
    let mut bottom = vec![0; spans.len()];
    for (row, &(_, _, i)) in points.iter().enumerate() {
        top[i] = top[i].min(row);
        bottom[i] = bottom[i].max(row);
    }
    let times: Vec<i64> = points.iter().map(|p| p.0).collect();

    // Lanes: each build in the first lane of its column that is free from its top row.
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].column, top[i]));
    let mut lane_free: Vec<Vec<usize>> = vec![Vec::new(); columns];
    let mut lane_of = vec![0; spans.len()];
    for &i in &order {
        let Some(free) = lane_free.get_mut(spans[i].column) else {
            continue;
        };
        let lane = match free.iter().position(|&f| f <= top[i]) {
            Some(l) => l,
            None => {
                free.push(0);
                free.len() - 1
            }
        };
        free[lane] = bottom[i] + 1;
        lane_of[i] = lane;
    }
    let lanes: Vec<usize> = lane_free.iter().map(|l| l.len().max(1)).collect();

    // The grid, lane by lane, then the cells each row emits.
    let width: usize = lanes.iter().sum();
    let offset: Vec<usize> = lanes
        .iter()
        .scan(0, |acc, l| {
            let o = *acc;
            *acc += l;
            Some(o)
        })
        .collect();
    let height = times.len();
    let mut owner: Vec<Vec<Option<usize>>> = vec![vec![None; width]; height];
    let mut starts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (i, s) in spans.iter().enumerate() {
        if s.column >= columns {
            continue;
        }
        let col = offset[s.column] + lane_of[i];
        for row in owner.iter_mut().take(bottom[i] + 1).skip(top[i]) {
            row[col] = Some(i);
        }
        starts.insert((top[i], col), i);
    }
    let mut rows = Vec::with_capacity(height);
    for r in 0..height {
        let mut cells = Vec::new();
        for (c, cell) in owner[r].iter().enumerate() {
            match *cell {
                Some(i) => {
                    if starts.get(&(r, c)) == Some(&i) {
                        cells.push(Cell::Build {
                            id: spans[i].id,
                            rows: bottom[i] - top[i] + 1,
                        });
                    }
                }
                None => {
                    if r > 0 && owner[r - 1][c].is_none() {
                        continue; // inside a run of empty cells begun above
                    }
                    let run = (r..height).take_while(|&k| owner[k][c].is_none()).count();
                    cells.push(Cell::Empty { rows: run });
                }
            }
        }
        rows.push(cells);
    }
    Chart { lanes, times, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(column: usize, id: i64, start: i64, end: i64) -> Span {
        Span {
            column,
            id,
            start,
            end,
        }
    }

    #[test]
    fn builds_stack_newest_first_and_overlaps_take_lanes() {
        // Column 0: build 1 from 10 to 20, build 2 from 20 to 30 (it starts as 1 ends).
        // Column 1: builds 3 and 4 overlap.
        let chart = layout(
            2,
            &[
                span(0, 1, 10, 20),
                span(0, 2, 20, 30),
                span(1, 3, 12, 25),
                span(1, 4, 15, 18),
            ],
        );
        assert_eq!(chart.lanes, vec![1, 2]);
        assert_eq!(chart.times, vec![30, 25, 20, 20, 18, 15, 12, 10]);
        // Row 0: build 2 begins (rows 0..=2), then build 3 is not yet there: empty runs.
        assert_eq!(
            chart.rows[0],
            vec![
                Cell::Build { id: 2, rows: 3 },
                Cell::Empty { rows: 1 },
                Cell::Empty { rows: 4 }
            ]
        );
        assert_eq!(chart.rows[1], vec![Cell::Build { id: 3, rows: 6 }]);
        assert_eq!(chart.rows[3], vec![Cell::Build { id: 1, rows: 5 }]);
        assert_eq!(chart.rows[4], vec![Cell::Build { id: 4, rows: 2 }]);
        // Every row's cells fill the table's width once the spans above are counted.
        let width: usize = chart.lanes.iter().sum();
        let mut covered = vec![0usize; chart.rows.len() + 8];
        for (r, cells) in chart.rows.iter().enumerate() {
            assert_eq!(cells.len() + covered[r], width, "row {r}");
            for c in cells {
                let n = match c {
                    Cell::Build { rows, .. } | Cell::Empty { rows } => *rows,
                };
                for below in covered.iter_mut().skip(r + 1).take(n - 1) {
                    *below += 1;
                }
            }
        }
    }

    #[test]
    fn an_empty_chart_has_a_lane_per_column_and_no_rows() {
        let chart = layout(3, &[]);
        assert_eq!(chart.lanes, vec![1, 1, 1]);
        assert!(chart.rows.is_empty());
    }
}
