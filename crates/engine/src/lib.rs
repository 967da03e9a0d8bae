//! Langflow flow model, graph validation and native components (work in progress).
