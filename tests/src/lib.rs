//! End-to-end tests: a real `redis-server` on a free port and real `eddy`
//! processes. (Filled from issue 3 on.)
#![forbid(unsafe_code)]
