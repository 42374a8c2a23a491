"""napari widgets: the only modules that import napari, qtpy or magicgui."""
